"""A LangChain retriever over Cairn's ``GET /api/search``
(``pip install cairn-client[langchain]``).

    from cairn_client.langchain import CairnRetriever

    retriever = CairnRetriever(url="http://127.0.0.1:8080", api_key=KEY, collection="docs", k=5)
    docs = retriever.invoke("how do I rotate the keys?")

Each passage becomes a ``Document`` whose ``page_content`` is the passage's
text and whose metadata holds ``doc``, ``heading``, ``score``, ``rank``,
``start``, ``end``, ``chunk`` and ``collection``.
"""

from __future__ import annotations

from typing import Any, List, Optional

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cairn_client.langchain needs langchain-core: pip install 'cairn-client[langchain]'"
    ) from e

from pydantic import ConfigDict, Field, model_validator

from .client import DEFAULT_TIMEOUT, AsyncCairn, Cairn
from .types import Hit

__all__ = ["CairnRetriever"]


class CairnRetriever(BaseRetriever):
    """Passages from a Cairn collection, ranked by Cairn's search (hybrid,
    dense or BM25, with its own fusion and reranking).

    Give it a :class:`cairn_client.Cairn` (``client=``) or the server's
    ``url`` (and ``api_key``, ``timeout``). ``collection`` defaults to the
    client's, ``k`` is the number of passages (1 to 100), ``mode`` hybrid,
    dense or bm25 (default: the server's). ``invoke(query, k=..., mode=...)``
    overrides them for one call. The async path (``ainvoke``) uses an
    asyncio HTTP client, not a thread.
    """

    client: Cairn
    collection: Optional[str] = None
    k: int = Field(default=4, ge=1, le=100)
    mode: Optional[str] = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _client_from_url(cls, values: Any) -> Any:
        if isinstance(values, dict) and "client" not in values and "url" in values:
            values = dict(values)
            values["client"] = Cairn(
                values.pop("url"),
                api_key=values.pop("api_key", None),
                collection=values.get("collection") or "default",
                timeout=values.pop("timeout", DEFAULT_TIMEOUT),
            )
        return values

    def _target(self) -> str:
        return self.collection or self.client.collection

    def _documents(self, hits: List[Hit], collection: str) -> List[Document]:
        return [Document(page_content=h.text, metadata=h.metadata(collection), id=h.passage_id(collection)) for h in hits]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        mode: Optional[str] = None,
    ) -> List[Document]:
        collection = self._target()
        hits = self.client.search(query, k=k or self.k, mode=mode or self.mode, collection=collection)
        return self._documents(hits, collection)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: Optional[int] = None,
        mode: Optional[str] = None,
    ) -> List[Document]:
        collection = self._target()
        c = self.client
        # A client per call: an asyncio HTTP client belongs to one event loop.
        async with AsyncCairn(c.url, api_key=c.api_key, collection=collection, timeout=c.timeout) as ac:
            hits = await ac.search(query, k=k or self.k, mode=mode or self.mode, collection=collection)
        return self._documents(hits, collection)

"""A LlamaIndex retriever over Cairn's ``GET /api/search``
(``pip install cairn-client[llama-index]``).

    from cairn_client.llama_index import CairnRetriever

    retriever = CairnRetriever(url="http://127.0.0.1:8080", api_key=KEY, collection="docs", k=5)
    for n in retriever.retrieve("how do I rotate the keys?"):
        print(n.score, n.node.metadata["doc"], n.node.get_content())

Each passage becomes a ``NodeWithScore`` holding a ``TextNode``: its text,
Cairn's score, metadata ``doc``, ``heading``, ``score``, ``rank``,
``start``, ``end``, ``chunk`` and ``collection``, the character span
(``start_char_idx``/``end_char_idx``) and the document as its source
(``node.ref_doc_id``). Only ``doc`` and ``heading`` go into the text an LLM
or an embedding model sees.
"""

from __future__ import annotations

from typing import List, Optional

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "cairn_client.llama_index needs llama-index-core: pip install 'cairn-client[llama-index]'"
    ) from e

from .client import DEFAULT_TIMEOUT, AsyncCairn, Cairn
from .types import Hit

__all__ = ["CairnRetriever"]

# Metadata kept out of the text handed to an LLM or an embedder.
_NOT_CONTENT = ["score", "rank", "start", "end", "chunk", "collection"]


class CairnRetriever(BaseRetriever):
    """Passages from a Cairn collection, ranked by Cairn's search.

    Give it a :class:`cairn_client.Cairn` (``client=``) or the server's
    ``url`` (and ``api_key``, ``timeout``). ``collection`` defaults to the
    client's, ``k`` is the number of passages (1 to 100), ``mode`` hybrid,
    dense or bm25 (default: the server's). ``aretrieve`` uses an asyncio
    HTTP client, not a thread.
    """

    def __init__(
        self,
        client: Optional[Cairn] = None,
        *,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
        collection: Optional[str] = None,
        k: int = 4,
        mode: Optional[str] = None,
        callback_manager: Optional[CallbackManager] = None,
        verbose: bool = False,
    ) -> None:
        if (client is None) == (url is None):
            raise ValueError("CairnRetriever takes a client or a url (one of them)")
        if not 1 <= k <= 100:
            raise ValueError(f"k must be 1 to 100, not {k}")
        self.client = client if client is not None else Cairn(url, api_key=api_key, collection=collection or "default", timeout=timeout)  # type: ignore[arg-type]
        self.collection = collection or self.client.collection
        self.k = k
        self.mode = mode
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _nodes(self, hits: List[Hit]) -> List[NodeWithScore]:
        out = []
        for h in hits:
            node = TextNode(
                id_=h.passage_id(self.collection),
                text=h.text,
                metadata=h.metadata(self.collection),
                start_char_idx=h.start,
                end_char_idx=h.end,
                excluded_llm_metadata_keys=list(_NOT_CONTENT),
                excluded_embed_metadata_keys=list(_NOT_CONTENT),
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"{self.collection}/{h.doc}")},
            )
            out.append(NodeWithScore(node=node, score=h.score))
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = self.client.search(query_bundle.query_str, k=self.k, mode=self.mode, collection=self.collection)
        return self._nodes(hits)

    async def _aretrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        c = self.client
        # A client per call: an asyncio HTTP client belongs to one event loop.
        async with AsyncCairn(c.url, api_key=c.api_key, collection=self.collection, timeout=c.timeout) as ac:
            hits = await ac.search(query_bundle.query_str, k=self.k, mode=self.mode, collection=self.collection)
        return self._nodes(hits)

    def __repr__(self) -> str:
        return f"CairnRetriever({self.client.url!r}, collection={self.collection!r}, k={self.k})"

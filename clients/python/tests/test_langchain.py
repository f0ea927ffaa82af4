"""cairn_client.langchain.CairnRetriever with the real langchain-core against
a live `cairn serve`: invoke, ainvoke, batch, per-call overrides, an LCEL
chain, and errors."""

import asyncio

import pytest
from conftest import COLLECTION, KEEPER_QUERY, KEY, URL
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from cairn_client import CairnError
from cairn_client.langchain import CairnRetriever


@pytest.fixture(scope="module")
def retriever(cairn):
    return CairnRetriever(client=cairn, k=3)


def test_documents_carry_the_passages_and_their_metadata(cairn, note, retriever):
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(KEEPER_QUERY)
    hits = cairn.search(KEEPER_QUERY, k=3)
    assert docs and len(docs) == len(hits), docs
    assert all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert "Mabel Torvik" in top.page_content
    assert top.metadata["doc"] == note and top.metadata["rank"] == 1
    assert top.metadata["collection"] == COLLECTION
    assert top.id == f"{COLLECTION}/{note}#{top.metadata['start']}-{top.metadata['end']}"
    for d, h in zip(docs, hits):
        assert d.page_content == h.text
        assert {k: d.metadata[k] for k in ("doc", "heading", "rank", "start", "end", "chunk")} == {
            "doc": h.doc, "heading": h.heading, "rank": h.rank, "start": h.start, "end": h.end, "chunk": h.chunk
        }
        assert d.metadata["score"] == pytest.approx(h.score)


def test_per_call_overrides_and_batch(note, retriever):
    assert len(retriever.invoke(KEEPER_QUERY, k=1)) == 1
    assert retriever.invoke(KEEPER_QUERY, k=1, mode="bm25")[0].metadata["doc"] == note
    keeper, light = retriever.batch([KEEPER_QUERY, "How far out to sea can the Orrin Point lamp be seen?"])
    assert "Torvik" in keeper[0].page_content
    assert "22 nautical" in light[0].page_content, light


def test_async_matches_sync(note, retriever):
    sync = retriever.invoke(KEEPER_QUERY)
    docs = asyncio.run(retriever.ainvoke(KEEPER_QUERY))
    assert [(d.page_content, d.metadata["rank"]) for d in docs] == [(d.page_content, d.metadata["rank"]) for d in sync]


def test_from_url(note):
    r = CairnRetriever(url=URL, api_key=KEY, collection=COLLECTION, k=1, timeout=600)
    docs = r.invoke(KEEPER_QUERY)
    assert len(docs) == 1 and docs[0].metadata["doc"] == note


def test_lcel_chain_formats_the_passages_into_a_prompt(note, retriever):
    def format_docs(docs):
        return "\n\n".join(f"[{i}] {d.metadata['doc']} ({d.metadata['heading']})\n{d.page_content}" for i, d in enumerate(docs, 1))

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from these sources, citing them as [n]:\n\n{context}"), ("human", "{question}")]
    )
    chain = {"context": retriever | RunnableLambda(format_docs), "question": RunnablePassthrough()} | prompt
    messages = chain.invoke(KEEPER_QUERY).to_messages()
    system, human = messages[0].content, messages[1].content
    assert system.startswith("Answer from these sources") and f"[1] {note} (Orrin Point Lighthouse" in system, system
    assert "Mabel Torvik" in system
    assert human == KEEPER_QUERY
    assert asyncio.run(chain.ainvoke(KEEPER_QUERY)).to_messages()[0].content == system


def test_errors_are_cairn_errors(cairn):
    with pytest.raises(CairnError) as e:
        CairnRetriever(client=cairn, collection="no-such-collection").invoke(KEEPER_QUERY)
    assert e.value.status == 404
    if KEY:
        bad = CairnRetriever(url=URL, api_key="wrong-key-0123456789abcdef", collection=COLLECTION)
        with pytest.raises(CairnError) as e:
            asyncio.run(bad.ainvoke(KEEPER_QUERY))
        assert e.value.status == 401 and "API key" in e.value.message
    with pytest.raises(ValueError):
        CairnRetriever(client=cairn, k=0)

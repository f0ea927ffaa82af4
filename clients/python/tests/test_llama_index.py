"""cairn_client.llama_index.CairnRetriever with the real llama-index-core
against a live `cairn serve`: retrieve, aretrieve, the nodes' metadata and
span, a RetrieverQueryEngine, and errors."""

import asyncio

import pytest
from conftest import COLLECTION, KEEPER_QUERY, KEY, URL
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from cairn_client import CairnError
from cairn_client.llama_index import CairnRetriever


@pytest.fixture(scope="module")
def retriever(cairn):
    return CairnRetriever(cairn, k=3)


def test_nodes_carry_the_passages_and_their_metadata(cairn, note, retriever):
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(KEEPER_QUERY)
    hits = cairn.search(KEEPER_QUERY, k=3)
    assert nodes and len(nodes) == len(hits), nodes
    assert all(isinstance(n, NodeWithScore) and isinstance(n.node, TextNode) for n in nodes)
    top = nodes[0].node
    assert "Mabel Torvik" in top.get_content()
    assert top.metadata["doc"] == note and top.metadata["collection"] == COLLECTION
    assert top.ref_doc_id == f"{COLLECTION}/{note}"
    assert top.node_id == f"{COLLECTION}/{note}#{top.start_char_idx}-{top.end_char_idx}"
    for n, h in zip(nodes, hits):
        assert n.node.get_content() == h.text
        assert n.score == pytest.approx(h.score)
        assert (n.node.start_char_idx, n.node.end_char_idx) == (h.start, h.end)
        assert {k: n.node.metadata[k] for k in ("doc", "heading", "rank", "chunk")} == {
            "doc": h.doc, "heading": h.heading, "rank": h.rank, "chunk": h.chunk
        }
    # An LLM sees the document and heading with the text, not the scores.
    llm_text = top.get_content(metadata_mode=MetadataMode.LLM)
    assert f"doc: {note}" in llm_text and "heading: Orrin Point Lighthouse" in llm_text, llm_text
    assert "score" not in llm_text and "rank" not in llm_text


def test_async_matches_sync(note, retriever):
    sync = retriever.retrieve(KEEPER_QUERY)
    nodes = asyncio.run(retriever.aretrieve(KEEPER_QUERY))
    assert [(n.node.node_id, n.score) for n in nodes] == [(n.node.node_id, n.score) for n in sync]


def test_retriever_query_engine(note, retriever):
    # The "no_text" synthesizer: the engine retrieves through Cairn and
    # returns the source nodes without writing an answer. LlamaIndex still
    # wants an LLM object; MockLLM is its "no LLM", never called by NoText.
    synth = NoText(llm=MockLLM())
    engine = RetrieverQueryEngine(retriever=retriever, response_synthesizer=synth)
    r = engine.query(KEEPER_QUERY)
    assert r.source_nodes and r.source_nodes[0].node.metadata["doc"] == note
    assert "Mabel Torvik" in r.source_nodes[0].node.get_content()
    ar = asyncio.run(engine.aquery(KEEPER_QUERY))
    assert [n.node.node_id for n in ar.source_nodes] == [n.node.node_id for n in r.source_nodes]


def test_from_url_and_errors(cairn, note):
    r = CairnRetriever(url=URL, api_key=KEY, collection=COLLECTION, k=1, timeout=600, mode="dense")
    nodes = r.retrieve(KEEPER_QUERY)
    assert len(nodes) == 1 and nodes[0].node.metadata["doc"] == note
    with pytest.raises(CairnError) as e:
        CairnRetriever(cairn, collection="no-such-collection").retrieve(KEEPER_QUERY)
    assert e.value.status == 404
    if KEY:
        bad = CairnRetriever(url=URL, api_key="wrong-key-0123456789abcdef", collection=COLLECTION)
        with pytest.raises(CairnError) as e:
            asyncio.run(bad.aretrieve(KEEPER_QUERY))
        assert e.value.status == 401
    with pytest.raises(ValueError):
        CairnRetriever(cairn, url=URL)
    with pytest.raises(ValueError):
        CairnRetriever(cairn, k=101)

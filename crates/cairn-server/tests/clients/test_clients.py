"""Cairn's OpenAI-compatible API driven by the real clients people point at
it: the `openai` Python SDK and LangChain's ChatOpenAI / OpenAIEmbeddings.

Runs against a live `cairn serve` (CAIRN_URL, optional CAIRN_API_KEY) whose
collection CAIRN_COLLECTION holds the Kestrel Bridge note (see
scripts/test-server.sh, which sets all of this up)."""

import math
import os

import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

URL = os.environ["CAIRN_URL"]
KEY = os.environ.get("CAIRN_API_KEY") or "no-key-needed"
COLLECTION = os.environ.get("CAIRN_COLLECTION", "clients")
MODEL = f"cairn:{COLLECTION}"
EMBED = "all-MiniLM-L6-v2"
QUESTION = "In what year did the Kestrel Bridge open?"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0, timeout=600)


def test_models_lists_collections_and_the_embedder(client):
    ids = {m.id for m in client.models.list()}
    assert {"cairn", MODEL, EMBED} <= ids, ids


def test_chat_completion_answers_with_citations(client):
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], temperature=0
    )
    assert r.object == "chat.completion"
    text = r.choices[0].message.content
    assert "1987" in text, text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0
    citations = r.model_extra["citations"]
    assert isinstance(citations, list)
    for c in citations:
        assert f"[{c['n']}]" in text
        assert c["doc"] == "bridge.md", c


def test_chat_completion_streams_openai_chunks(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1987" in text, text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.choices[0].finish_reason == "stop"
    assert isinstance(final.model_extra["citations"], list)
    assert chunks[-1].usage.completion_tokens > 0


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_embeddings_are_the_real_model(client):
    # The SDK asks for base64 by default and decodes it.
    r = client.embeddings.create(
        model=EMBED,
        input=["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."],
    )
    v = [d.embedding for d in r.data]
    assert len(v[0]) == 384
    assert cosine(v[0], v[1]) > 0.6 and cosine(v[0], v[2]) < 0.2
    f = client.embeddings.create(model=EMBED, input="A man is eating food.", encoding_format="float")
    assert cosine(f.data[0].embedding, v[0]) > 0.9999


def test_langchain_chat_openai_invoke_and_stream():
    llm = ChatOpenAI(base_url=f"{URL}/v1", api_key=KEY, model=MODEL, temperature=0, max_retries=0, timeout=600)
    msg = llm.invoke(QUESTION)
    assert "1987" in msg.content, msg.content
    assert isinstance(msg.response_metadata, dict)
    streamed = "".join(chunk.content for chunk in llm.stream(QUESTION))
    assert "1987" in streamed, streamed


def test_langchain_openai_embeddings():
    # tiktoken would fetch its vocabulary from the internet; Cairn tokenizes
    # text itself, so the client sends plain strings.
    emb = OpenAIEmbeddings(
        base_url=f"{URL}/v1",
        api_key=KEY,
        model=EMBED,
        check_embedding_ctx_length=False,
        tiktoken_enabled=False,
    )
    docs = emb.embed_documents(["The bridge opened in 1987.", "Pasta needs salted water."])
    q = emb.embed_query("When did the bridge open?")
    assert len(q) == 384
    assert cosine(q, docs[0]) > cosine(q, docs[1]) + 0.2

"""A Python client of Cairn's HTTP server (``cairn serve``), with retrievers
for LangChain (:mod:`cairn_client.langchain`) and LlamaIndex
(:mod:`cairn_client.llama_index`) over ``/api/search``.

    from cairn_client import Cairn

    with Cairn("http://127.0.0.1:8080", api_key=KEY, collection="docs") as cairn:
        cairn.upload("notes.md")
        for hit in cairn.search("how do I rotate the keys?", k=5):
            print(hit.rank, hit.doc, hit.heading, hit.score)
        answer = cairn.ask("How do I rotate the keys?")
        print(answer.answer, [c.doc for c in answer.citations])

Importing this package needs only ``httpx``; the integrations import their
frameworks when they are imported themselves.
"""

from .client import DEFAULT_TIMEOUT, AsyncCairn, Cairn, StreamEvent
from .errors import CairnError, JobFailed
from .types import (
    Answer,
    Citation,
    CollectionInfo,
    DocumentInfo,
    FeedbackCreated,
    FeedbackRecord,
    Hit,
    Job,
    Restart,
    Sentence,
    Skipped,
    Token,
)

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "AsyncCairn",
    "Cairn",
    "CairnError",
    "Citation",
    "CollectionInfo",
    "DEFAULT_TIMEOUT",
    "DocumentInfo",
    "FeedbackCreated",
    "FeedbackRecord",
    "Hit",
    "Job",
    "JobFailed",
    "Restart",
    "Sentence",
    "Skipped",
    "StreamEvent",
    "Token",
]

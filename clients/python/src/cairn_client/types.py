"""The REST API's response bodies as typed, immutable Python objects.

Each type mirrors one schema of the server's ``/openapi.json`` (``Hit``,
``Citation``, ``SentenceSupport``, ``AnswerOut``, ``Job``, ...). Fields the
server adds later are ignored; ``Answer.raw`` keeps the whole body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple


@dataclass(frozen=True)
class Hit:
    """A ranked passage of ``GET /api/search`` (and an answer's ``retrieved``)."""

    rank: int
    """1 for the best."""
    score: float
    """The fused score (or the one list's score in dense or BM25 mode)."""
    doc: str
    """The document's display name."""
    chunk: int
    """The chunk's id in its catalog (a shard's, on a cluster)."""
    heading: str
    """The passage's heading path, ``Title > Section > ...``."""
    start: int
    """Character offset of the passage in the document's text."""
    end: int
    text: str
    page: Optional[int] = None
    """The PDF page the passage is on (PDF documents only)."""

    def metadata(self, collection: str) -> Dict[str, Any]:
        """The passage's metadata as the retrievers attach it (``page`` only
        for a PDF passage)."""
        meta: Dict[str, Any] = {
            "doc": self.doc,
            "heading": self.heading,
            "score": self.score,
            "rank": self.rank,
            "start": self.start,
            "end": self.end,
            "chunk": self.chunk,
            "collection": collection,
        }
        if self.page is not None:
            meta["page"] = self.page
        return meta

    def passage_id(self, collection: str) -> str:
        """An id for the passage, stable while the document is unchanged:
        ``collection/doc#start-end``."""
        return f"{collection}/{self.doc}#{self.start}-{self.end}"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Hit":
        return cls(
            rank=int(d["rank"]),
            score=float(d["score"]),
            doc=d["doc"],
            chunk=int(d["chunk"]),
            heading=d["heading"],
            start=int(d["start"]),
            end=int(d["end"]),
            text=d["text"],
            page=_page(d),
        )


def _page(d: Mapping[str, Any]) -> Optional[int]:
    page = d.get("page")
    return None if page is None else int(page)


@dataclass(frozen=True)
class Citation:
    """A cited source: ``[n]`` in the answer's text."""

    n: int
    doc: str
    heading: str
    start: int
    end: int
    text: str
    page: Optional[int] = None
    """The PDF page the cited passage starts on (PDF documents only)."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Citation":
        return cls(
            n=int(d["n"]),
            doc=d["doc"],
            heading=d["heading"],
            start=int(d["start"]),
            end=int(d["end"]),
            text=d["text"],
            page=_page(d),
        )


@dataclass(frozen=True)
class Sentence:
    """One sentence of an answer and the sources that support it."""

    text: str
    citations: Tuple[int, ...]
    """Numbers of the sources that support it."""
    support: float
    """The critic's probability that the best source supports it."""
    supported: bool
    claim: bool
    """False for a line that states nothing (an introduction, a heading)."""
    corrected: bool
    """A marker of the generated sentence was changed or added."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Sentence":
        return cls(
            text=d["text"],
            citations=tuple(int(n) for n in d.get("citations", ())),
            support=float(d["support"]),
            supported=bool(d["supported"]),
            claim=bool(d.get("claim", True)),
            corrected=bool(d.get("corrected", False)),
        )


@dataclass(frozen=True)
class Answer:
    """The answer of ``POST /api/ask``."""

    answer_id: str
    """Refer to this answer in :meth:`cairn_client.Cairn.feedback`."""
    collection: str
    answer: str
    """The text, with ``[n]`` markers that point into ``citations``."""
    answered: bool
    """False when no passage was relevant enough to answer from."""
    citations: Tuple[Citation, ...]
    retrieved: Tuple[Hit, ...]
    sentences: Tuple[Sentence, ...]
    model: str
    strategy: str
    """generated, regenerated, extractive, fallback-extractive or not-covered."""
    critic: Optional[str]
    finish_reason: Optional[str]
    prompt_tokens: int
    completion_tokens: int
    timings_ms: Dict[str, Optional[float]]
    cluster: Optional[Dict[str, Any]]
    """On a cluster: shards searched and the replica that answered."""
    raw: Dict[str, Any] = field(repr=False, compare=False)
    """The whole JSON body."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Answer":
        return cls(
            answer_id=d["answer_id"],
            collection=d["collection"],
            answer=d["answer"],
            answered=bool(d["answered"]),
            citations=tuple(Citation.from_json(c) for c in d.get("citations", ())),
            retrieved=tuple(Hit.from_json(h) for h in d.get("retrieved", ())),
            sentences=tuple(Sentence.from_json(s) for s in d.get("sentences", ())),
            model=d.get("model", ""),
            strategy=d.get("strategy", ""),
            critic=d.get("critic"),
            finish_reason=d.get("finish_reason"),
            prompt_tokens=int(d.get("prompt_tokens", 0)),
            completion_tokens=int(d.get("completion_tokens", 0)),
            timings_ms=dict(d.get("timings_ms") or {}),
            cluster=d.get("cluster"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Token:
    """A piece of a streamed answer's text."""

    text: str


@dataclass(frozen=True)
class Restart:
    """The text streamed so far is withdrawn; the answer is generated again
    (the check found it unsupported, or a cluster's replica was lost)."""

    reason: str


@dataclass(frozen=True)
class Skipped:
    """A file an ingestion job did not ingest, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Job:
    """An ingestion job (``GET /api/jobs/{id}``)."""

    id: str
    collection: str
    state: str
    """queued, running, done, failed or cancelled."""
    phase: str
    files_total: int
    files_done: int
    chunks_added: int
    documents_added: int
    documents_updated: int
    skipped: Tuple[Skipped, ...]
    error: Optional[str]
    created_at: str
    finished_at: Optional[str]

    @property
    def finished(self) -> bool:
        """Whether the job has ended (done, failed or cancelled)."""
        return self.state in ("done", "failed", "cancelled")

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Job":
        return cls(
            id=d["id"],
            collection=d["collection"],
            state=d["state"],
            phase=d.get("phase", ""),
            files_total=int(d.get("files_total", 0)),
            files_done=int(d.get("files_done", 0)),
            chunks_added=int(d.get("chunks_added", 0)),
            documents_added=int(d.get("documents_added", 0)),
            documents_updated=int(d.get("documents_updated", 0)),
            skipped=tuple(Skipped(s["path"], s["reason"]) for s in d.get("skipped", ())),
            error=d.get("error"),
            created_at=d.get("created_at", ""),
            finished_at=d.get("finished_at"),
        )


@dataclass(frozen=True)
class CollectionInfo:
    """A collection and its size (``GET /api/collections``)."""

    name: str
    documents: int
    chunks: int
    embed_model: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CollectionInfo":
        return cls(
            name=d["name"],
            documents=int(d["documents"]),
            chunks=int(d["chunks"]),
            embed_model=d.get("embed_model", ""),
        )


@dataclass(frozen=True)
class DocumentInfo:
    """A document of a collection (``GET /api/collections/{name}/documents``)."""

    id: int
    name: str
    format: str
    size: int
    chunks: int
    seq: int
    """Catalog sequence of its last change."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DocumentInfo":
        return cls(
            id=int(d["id"]),
            name=d["name"],
            format=d.get("format", ""),
            size=int(d.get("size", 0)),
            chunks=int(d.get("chunks", 0)),
            seq=int(d.get("seq", 0)),
        )


@dataclass(frozen=True)
class FeedbackCreated:
    """``POST /api/feedback``: the record's id and the collection of the answer it rates."""

    id: int
    collection: str


@dataclass(frozen=True)
class FeedbackRecord:
    """A rating with the answer it is about (``GET /api/feedback``)."""

    id: int
    answer_id: str
    collection: str
    rating: str
    """up or down."""
    comment: Optional[str]
    helpful_citations: Tuple[int, ...]
    question: str
    answer: str
    model: str
    retrieved: Tuple[int, ...]
    created_at: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FeedbackRecord":
        return cls(
            id=int(d["id"]),
            answer_id=d["answer_id"],
            collection=d["collection"],
            rating=d["rating"],
            comment=d.get("comment"),
            helpful_citations=tuple(int(n) for n in d.get("helpful_citations", ())),
            question=d.get("question", ""),
            answer=d.get("answer", ""),
            model=d.get("model", ""),
            retrieved=tuple(int(n) for n in d.get("retrieved", ())),
            created_at=d.get("created_at", ""),
        )


def hits_from(body: Mapping[str, Any]) -> List[Hit]:
    return [Hit.from_json(h) for h in body.get("hits", ())]

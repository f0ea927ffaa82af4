"""``Cairn`` (blocking) and ``AsyncCairn`` (asyncio): the REST API under
``/api`` of ``cairn serve``.

Both build the same requests (``_Call``) and parse the same bodies; only the
sending differs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from urllib.parse import quote

import httpx

from .errors import CairnError, JobFailed, from_body, from_response
from .types import (
    Answer,
    CollectionInfo,
    DocumentInfo,
    FeedbackCreated,
    FeedbackRecord,
    Hit,
    Job,
    Restart,
    Token,
    hits_from,
)

PathLike = Union[str, "os.PathLike[str]"]
StreamEvent = Union[Token, Restart, Answer]
"""What :meth:`Cairn.ask_stream` yields: tokens, restarts, then the answer."""

DEFAULT_TIMEOUT = 300.0
"""Seconds to wait for a response (an answer on a busy CPU can take minutes)."""


@dataclass
class _Call:
    method: str
    path: str
    parse: Callable[[Any], Any]
    params: Optional[Dict[str, Any]] = None
    json: Any = None
    files: Optional[List[Tuple[str, Tuple[str, Any, str]]]] = None


def _seg(name: str) -> str:
    return quote(name, safe="")


def _params(**kw: Any) -> Dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _rating(rating: Union[str, bool]) -> str:
    if rating is True:
        return "up"
    if rating is False:
        return "down"
    if rating not in ("up", "down"):
        raise ValueError(f"rating must be 'up', 'down', True or False, not {rating!r}")
    return rating


def _history(history: Optional[Sequence[Any]]) -> List[Dict[str, str]]:
    """Earlier turns as ``{"role", "content"}``: dicts, or (role, content) pairs."""
    out = []
    for turn in history or ():
        if isinstance(turn, Mapping):
            out.append({"role": str(turn["role"]), "content": str(turn["content"])})
        else:
            role, content = turn
            out.append({"role": str(role), "content": str(content)})
    return out


class _SseParser:
    """Server-sent events, one line at a time (the line without its ending)."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: List[str] = []

    def feed(self, line: str) -> Optional[Tuple[str, str]]:
        if line == "":
            out = (self.event, "\n".join(self.data)) if self.data else None
            self.event, self.data = "message", []
            return out
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None

    def take(self, line: str) -> Optional["StreamEvent"]:
        """The stream event a line completes, if any."""
        ev = self.feed(line)
        return _stream_event(*ev) if ev is not None else None


def _stream_event(event: str, data: str) -> Optional[StreamEvent]:
    try:
        body = json.loads(data)
    except ValueError:
        raise CairnError(None, f"the answer stream sent an unreadable `{event}` event: {data[:200]}") from None
    if event == "token":
        return Token(body["text"])
    if event == "restart":
        return Restart(body.get("reason", ""))
    if event == "done":
        return Answer.from_json(body)
    if event == "error":
        raise from_body(None, body)
    return None  # an event this client does not know yet


class _Base:
    def __init__(
        self,
        url: str,
        api_key: Optional[str] = None,
        collection: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.collection = collection
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, collection={self.collection!r})"

    def _headers(self) -> Dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "cairn-client-python"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _coll(self, collection: Optional[str]) -> str:
        return collection or self.collection

    def _unreachable(self, call: _Call, e: Exception) -> CairnError:
        if isinstance(e, httpx.TimeoutException):
            return CairnError(None, f"{call.method} {self.url}{call.path}: no response within {self.timeout} s", "timeout")
        return CairnError(None, f"cannot reach Cairn at {self.url}: {e}", "connection_error")

    @staticmethod
    def _parsed(call: _Call, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise from_response(r)
        if r.status_code == 204 or not r.content:
            return call.parse(None)
        try:
            body = r.json()
        except ValueError:
            raise CairnError(r.status_code, f"{call.method} {call.path} answered something that is not JSON: {r.text[:200]}") from None
        return call.parse(body)

    # The requests, one per operation.

    def _health(self) -> _Call:
        return _Call("GET", "/healthz", dict)

    def _collections(self) -> _Call:
        return _Call("GET", "/api/collections", lambda b: [CollectionInfo.from_json(c) for c in b["collections"]])

    def _create_collection(self, name: str) -> _Call:
        return _Call("POST", "/api/collections", CollectionInfo.from_json, json={"name": name})

    def _delete_collection(self, name: str) -> _Call:
        return _Call("DELETE", f"/api/collections/{_seg(name)}", lambda b: None)

    def _documents(self, collection: Optional[str]) -> _Call:
        path = f"/api/collections/{_seg(self._coll(collection))}/documents"
        return _Call("GET", path, lambda b: [DocumentInfo.from_json(d) for d in b["documents"]])

    def _remove(self, doc_id: int, collection: Optional[str]) -> _Call:
        return _Call("DELETE", f"/api/collections/{_seg(self._coll(collection))}/documents/{int(doc_id)}", lambda b: None)

    def _upload(
        self,
        paths: Union[None, PathLike, Sequence[PathLike]],
        name: Optional[str],
        text: Optional[str],
        data: Optional[bytes],
        collection: Optional[str],
    ) -> Tuple[_Call, List[Any]]:
        """The upload request and the files it opened (to close after)."""
        path = f"/api/collections/{_seg(self._coll(collection))}/documents"
        parse = lambda b: Job.from_json(b["job"])  # noqa: E731
        given = sum(x is not None for x in (paths, text, data))
        if given != 1:
            raise ValueError("upload takes paths, or name with text, or name with data (one of them)")
        if text is not None or data is not None:
            if not name:
                raise ValueError("a text or data upload needs a name (its extension picks the format: notes.md, page.html, ...)")
            if text is not None:
                return _Call("POST", path, parse, json={"name": name, "text": text}), []
            return _Call("POST", path, parse, files=[("file", (name, data, "application/octet-stream"))]), []
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)  # type: ignore[arg-type]
        if not paths:
            raise ValueError("upload needs at least one path")
        if name and len(paths) > 1:
            raise ValueError("name renames one file; several keep their own names")
        opened: List[Any] = []
        files = []
        try:
            for p in paths:
                fh = open(p, "rb")  # noqa: SIM115 - closed by the caller once sent
                opened.append(fh)
                files.append(("file", (name or os.path.basename(os.fspath(p)), fh, "application/octet-stream")))
        except BaseException:
            for fh in opened:
                fh.close()
            raise
        return _Call("POST", path, parse, files=files), opened

    def _jobs(self) -> _Call:
        return _Call("GET", "/api/jobs", lambda b: [Job.from_json(j) for j in b["jobs"]])

    def _job(self, job_id: str) -> _Call:
        return _Call("GET", f"/api/jobs/{_seg(job_id)}", Job.from_json)

    def _search(self, query: str, k: Optional[int], mode: Optional[str], collection: Optional[str]) -> _Call:
        return _Call("GET", "/api/search", hits_from, params=_params(q=query, collection=self._coll(collection), k=k, mode=mode))

    def _ask(
        self,
        question: str,
        k: Optional[int],
        mode: Optional[str],
        history: Optional[Sequence[Any]],
        collection: Optional[str],
        stream: bool,
    ) -> _Call:
        body = _params(question=question, collection=self._coll(collection), k=k, mode=mode)
        body["stream"] = stream
        body["history"] = _history(history)
        return _Call("POST", "/api/ask", Answer.from_json, json=body)

    def _feedback(self, answer_id: str, rating: Union[str, bool], comment: Optional[str], helpful_citations: Iterable[int]) -> _Call:
        body = {"answer_id": answer_id, "rating": _rating(rating), "comment": comment, "helpful_citations": [int(n) for n in helpful_citations]}
        return _Call("POST", "/api/feedback", lambda b: FeedbackCreated(int(b["id"]), b["collection"]), json=body)

    def _feedback_list(self, collection: Optional[str], limit: Optional[int]) -> _Call:
        return _Call(
            "GET",
            "/api/feedback",
            lambda b: [FeedbackRecord.from_json(f) for f in b["feedback"]],
            params=_params(collection=self._coll(collection), limit=limit),
        )

    @staticmethod
    def _named(docs: List[DocumentInfo], name: str, collection: str) -> int:
        for d in docs:
            if d.name == name:
                return d.id
        raise CairnError(404, f"no document named `{name}` in collection `{collection}`", "not_found")


class Cairn(_Base):
    """A blocking client of ``cairn serve``'s REST API.

    ``url`` is the server's address (``http://127.0.0.1:8080``), ``api_key``
    the bearer key when the server requires one, ``collection`` the
    collection used when a call names none, ``timeout`` the seconds to wait
    for any one response. Use it as a context manager, or call :meth:`close`.
    Every failure raises :class:`CairnError`.
    """

    def __init__(
        self,
        url: str,
        api_key: Optional[str] = None,
        collection: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(url, api_key, collection, timeout)
        self._http = httpx.Client(base_url=self.url, headers=self._headers(), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Cairn":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _do(self, call: _Call) -> Any:
        try:
            r = self._http.request(call.method, call.path, params=call.params, json=call.json, files=call.files)
        except httpx.TransportError as e:
            raise self._unreachable(call, e) from e
        return self._parsed(call, r)

    def health(self) -> Dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "version": ...}``."""
        return self._do(self._health())

    def collections(self) -> List[CollectionInfo]:
        """The collections this key may use, with their sizes."""
        return self._do(self._collections())

    def create_collection(self, name: str) -> CollectionInfo:
        """Create a collection (returns the existing one if it exists)."""
        return self._do(self._create_collection(name))

    def delete_collection(self, name: str) -> None:
        self._do(self._delete_collection(name))

    def documents(self, collection: Optional[str] = None) -> List[DocumentInfo]:
        """The documents of a collection."""
        return self._do(self._documents(collection))

    def remove(self, document: Union[int, str], collection: Optional[str] = None) -> None:
        """Remove a document, by id or by display name."""
        if isinstance(document, str):
            coll = self._coll(collection)
            document = self._named(self.documents(coll), document, coll)
        self._do(self._remove(document, collection))

    def upload(
        self,
        paths: Union[None, PathLike, Sequence[PathLike]] = None,
        *,
        name: Optional[str] = None,
        text: Optional[str] = None,
        data: Optional[bytes] = None,
        collection: Optional[str] = None,
        wait: bool = True,
        wait_timeout: Optional[float] = 600.0,
    ) -> Job:
        """Add documents: files from disk (``paths``: one or a list), or one
        document from memory, ``name`` with ``text`` (sent as JSON) or with
        ``data`` (bytes of any format, e.g. a PDF). The name's extension
        picks the format; a file keeps its own name unless ``name`` gives
        the one file another. The collection is created if missing.

        Ingestion runs as a job on the server; with ``wait`` (the default)
        this returns once it has ended, raising :class:`JobFailed` if it
        failed. Files the job skipped (unreadable, unsupported) are in
        ``job.skipped``.
        """
        call, opened = self._upload(paths, name, text, data, collection)
        try:
            job = self._do(call)
        finally:
            for fh in opened:
                fh.close()
        return self.wait_for_job(job.id, timeout=wait_timeout) if wait else job

    def jobs(self) -> List[Job]:
        """Ingestion jobs, newest first."""
        return self._do(self._jobs())

    def job(self, job_id: str) -> Job:
        return self._do(self._job(job_id))

    def wait_for_job(self, job_id: str, timeout: Optional[float] = 600.0, poll: float = 0.2) -> Job:
        """Poll a job until it ends; :class:`JobFailed` if it failed or was
        cancelled, a ``timeout`` :class:`CairnError` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.finished:
                if job.state != "done":
                    raise JobFailed(job)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise CairnError(None, f"ingestion job {job_id} is still {job.state} ({job.phase}) after {timeout} s", "timeout")
            time.sleep(poll)
            poll = min(poll * 1.5, 2.0)

    def search(
        self,
        query: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        collection: Optional[str] = None,
    ) -> List[Hit]:
        """Ranked passages for ``query``: ``k`` of them (1 to 100; default
        the server's ``search.top_k``), ``mode`` hybrid, dense or bm25
        (default the server's)."""
        return self._do(self._search(query, k, mode, collection))

    def ask(
        self,
        question: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        history: Optional[Sequence[Any]] = None,
        collection: Optional[str] = None,
    ) -> Answer:
        """An answer from the collection, with ``[n]`` citations and each
        sentence's support. ``history``: earlier turns, oldest first, as
        ``{"role": "user"|"assistant", "content": ...}`` or (role, content)."""
        return self._do(self._ask(question, k, mode, history, collection, stream=False))

    def ask_stream(
        self,
        question: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        history: Optional[Sequence[Any]] = None,
        collection: Optional[str] = None,
    ) -> Iterator[StreamEvent]:
        """The answer as it is generated: :class:`Token` pieces, a
        :class:`Restart` when the text streamed so far is withdrawn (drop
        it; the new attempt's tokens follow), and last the whole
        :class:`Answer`. Leaving the loop early stops the generation."""
        call = self._ask(question, k, mode, history, collection, stream=True)
        try:
            with self._http.stream(call.method, call.path, json=call.json, headers={"Accept": "text/event-stream"}) as r:
                if r.status_code >= 400:
                    r.read()
                    raise from_response(r)
                parser = _SseParser()
                for line in itertools.chain(r.iter_lines(), [""]):
                    out = parser.take(line)
                    if out is not None:
                        yield out
                        if isinstance(out, Answer):
                            return
        except httpx.TransportError as e:
            raise self._unreachable(call, e) from e
        raise CairnError(None, "the answer stream ended without its `done` event", "server_error")

    def feedback(
        self,
        answer_id: str,
        rating: Union[str, bool],
        comment: Optional[str] = None,
        helpful_citations: Iterable[int] = (),
    ) -> FeedbackCreated:
        """Rate an answer (``"up"``/``"down"``, or True/False), optionally
        with a comment and the citation numbers that helped."""
        return self._do(self._feedback(answer_id, rating, comment, helpful_citations))

    def feedback_list(self, collection: Optional[str] = None, limit: Optional[int] = None) -> List[FeedbackRecord]:
        """A collection's ratings, newest first (``limit`` 1 to 1000, default 100)."""
        return self._do(self._feedback_list(collection, limit))


class AsyncCairn(_Base):
    """The asyncio twin of :class:`Cairn`: the same methods, awaited
    (``ask_stream`` is an async iterator). Use it as an async context
    manager, or ``await aclose()``."""

    def __init__(
        self,
        url: str,
        api_key: Optional[str] = None,
        collection: str = "default",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(url, api_key, collection, timeout)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers(), timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncCairn":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _do(self, call: _Call) -> Any:
        try:
            r = await self._http.request(call.method, call.path, params=call.params, json=call.json, files=call.files)
        except httpx.TransportError as e:
            raise self._unreachable(call, e) from e
        return self._parsed(call, r)

    async def health(self) -> Dict[str, Any]:
        return await self._do(self._health())

    async def collections(self) -> List[CollectionInfo]:
        return await self._do(self._collections())

    async def create_collection(self, name: str) -> CollectionInfo:
        return await self._do(self._create_collection(name))

    async def delete_collection(self, name: str) -> None:
        await self._do(self._delete_collection(name))

    async def documents(self, collection: Optional[str] = None) -> List[DocumentInfo]:
        return await self._do(self._documents(collection))

    async def remove(self, document: Union[int, str], collection: Optional[str] = None) -> None:
        if isinstance(document, str):
            coll = self._coll(collection)
            document = self._named(await self.documents(coll), document, coll)
        await self._do(self._remove(document, collection))

    async def upload(
        self,
        paths: Union[None, PathLike, Sequence[PathLike]] = None,
        *,
        name: Optional[str] = None,
        text: Optional[str] = None,
        data: Optional[bytes] = None,
        collection: Optional[str] = None,
        wait: bool = True,
        wait_timeout: Optional[float] = 600.0,
    ) -> Job:
        call, opened = self._upload(paths, name, text, data, collection)
        try:
            job = await self._do(call)
        finally:
            for fh in opened:
                fh.close()
        return await self.wait_for_job(job.id, timeout=wait_timeout) if wait else job

    async def jobs(self) -> List[Job]:
        return await self._do(self._jobs())

    async def job(self, job_id: str) -> Job:
        return await self._do(self._job(job_id))

    async def wait_for_job(self, job_id: str, timeout: Optional[float] = 600.0, poll: float = 0.2) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.finished:
                if job.state != "done":
                    raise JobFailed(job)
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise CairnError(None, f"ingestion job {job_id} is still {job.state} ({job.phase}) after {timeout} s", "timeout")
            await asyncio.sleep(poll)
            poll = min(poll * 1.5, 2.0)

    async def search(
        self,
        query: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        collection: Optional[str] = None,
    ) -> List[Hit]:
        return await self._do(self._search(query, k, mode, collection))

    async def ask(
        self,
        question: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        history: Optional[Sequence[Any]] = None,
        collection: Optional[str] = None,
    ) -> Answer:
        return await self._do(self._ask(question, k, mode, history, collection, stream=False))

    async def ask_stream(
        self,
        question: str,
        k: Optional[int] = None,
        mode: Optional[str] = None,
        history: Optional[Sequence[Any]] = None,
        collection: Optional[str] = None,
    ) -> AsyncIterator[StreamEvent]:
        call = self._ask(question, k, mode, history, collection, stream=True)
        try:
            async with self._http.stream(call.method, call.path, json=call.json, headers={"Accept": "text/event-stream"}) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise from_response(r)
                parser = _SseParser()
                async for line in r.aiter_lines():
                    out = parser.take(line)
                    if out is not None:
                        yield out
                        if isinstance(out, Answer):
                            return
                out = parser.take("")
                if out is not None:
                    yield out
                    if isinstance(out, Answer):
                        return
        except httpx.TransportError as e:
            raise self._unreachable(call, e) from e
        raise CairnError(None, "the answer stream ended without its `done` event", "server_error")

    async def feedback(
        self,
        answer_id: str,
        rating: Union[str, bool],
        comment: Optional[str] = None,
        helpful_citations: Iterable[int] = (),
    ) -> FeedbackCreated:
        return await self._do(self._feedback(answer_id, rating, comment, helpful_citations))

    async def feedback_list(self, collection: Optional[str] = None, limit: Optional[int] = None) -> List[FeedbackRecord]:
        return await self._do(self._feedback_list(collection, limit))

"""Errors raised by the client."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .types import Job


class CairnError(Exception):
    """A request Cairn refused or could not serve, or a server that could not
    be reached.

    ``status`` is the HTTP status (None when no response came back, or for an
    error event inside a stream), ``message`` the server's own message,
    ``type`` its category (``invalid_request_error``, ``not_found``,
    ``unauthorized``, ``forbidden``, ``conflict``, ``overloaded``,
    ``unavailable``, ``timeout``, ``server_error``; or the client's
    ``connection_error``), ``field`` the request field at fault when the
    server names one, ``retry_after`` the seconds a 503 asks to wait.
    """

    def __init__(
        self,
        status: Optional[int],
        message: str,
        type: Optional[str] = None,
        field: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.field = field
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "Cairn"
        kind = f" ({self.type})" if self.type else ""
        return f"{where}{kind}: {self.message}"

    def __repr__(self) -> str:
        return f"CairnError(status={self.status!r}, message={self.message!r}, type={self.type!r})"


class JobFailed(CairnError):
    """An ingestion job waited for ended ``failed`` or ``cancelled``; ``job``
    is its last state."""

    def __init__(self, job: "Job") -> None:
        self.job = job
        why = job.error or "no reason given"
        super().__init__(None, f"ingestion job {job.id} into `{job.collection}` ended {job.state}: {why}", type=job.state)


def from_body(status: Optional[int], body: Any, retry_after: Optional[float] = None) -> CairnError:
    """The error that ``{"error": {"message", "type", "field"}}`` describes."""
    detail = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping) and isinstance(detail.get("message"), str):
        return CairnError(status, detail["message"], detail.get("type"), detail.get("field"), retry_after)
    return CairnError(status, json.dumps(body)[:500] if body is not None else "no error message", None, None, retry_after)


def from_response(r: "httpx.Response") -> CairnError:
    """The error an HTTP response of status 400 or above carries (the body
    must have been read)."""
    retry_after: Optional[float] = None
    if "retry-after" in r.headers:
        try:
            retry_after = float(r.headers["retry-after"])
        except ValueError:
            pass
    try:
        body = r.json()
    except ValueError:
        text = r.text.strip()
        return CairnError(r.status_code, text[:500] or r.reason_phrase or "no error message", None, None, retry_after)
    return from_body(r.status_code, body, retry_after)

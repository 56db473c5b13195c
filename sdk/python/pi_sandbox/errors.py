"""The one error every call raises: the API's ``{"error": {...}}`` envelope, or a client-side failure."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

#: Failures the client detects itself (``status`` is 0 for them); the rest are the server's codes.
#: ``invalid_path`` (a server code) also comes from the client, with status 0, for a path whose
#: ``..`` climbs above /workspace: a URL cannot carry it.
CLIENT_ERROR_CODES = ("client_timeout", "network_error", "invalid_response", "not_a_directory", "is_a_directory")


class SandboxApiError(Exception):
    """``code`` is stable (branch on it); ``message`` is for people and may change."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int,
        request_id: Optional[str] = None,
        retry_after_seconds: Optional[int] = None,
        details: Optional[List[Dict[str, str]]] = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after_seconds = retry_after_seconds
        self.details = details or []

    def __repr__(self) -> str:
        return (
            f"SandboxApiError(code={self.code!r}, status={self.status}, "
            f"request_id={self.request_id!r}, message={self.message!r})"
        )


def error_from_body(status: int, body: bytes, headers: Any) -> SandboxApiError:
    """A non-2xx answer as the error it carries; a body that is not the envelope is ``invalid_response``."""
    import json

    retry_after = retry_after_of(headers)
    request_id = headers.get("x-request-id") if headers is not None else None
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        parsed = None
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("code"), str):
        text = body[:200].decode("utf-8", "replace")
        return SandboxApiError(
            "invalid_response", f"HTTP {status} without an error body: {text}", status, request_id, retry_after
        )
    if retry_after is None and isinstance(err.get("retryAfterSeconds"), int):
        retry_after = err["retryAfterSeconds"]
    return SandboxApiError(
        err["code"],
        str(err.get("message", "")),
        status,
        err.get("requestId") or request_id,
        retry_after,
        err.get("details") if isinstance(err.get("details"), list) else None,
    )


def retry_after_of(headers: Any) -> Optional[int]:
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    from email.utils import parsedate_to_datetime
    import time

    try:
        return max(0, int(parsedate_to_datetime(value).timestamp() - time.time() + 0.999))
    except (TypeError, ValueError):
        return None

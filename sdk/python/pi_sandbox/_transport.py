"""HTTP over urllib: bearer auth, one deadline per call, bounded retries of what was not served."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import IO, Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from .errors import SandboxApiError, error_from_body

#: 503s that guarantee the request was not served (no pod; no agent of the region or of the
#: sandbox's cluster; agent stopping), so a retry cannot run a command twice.
#: ``lease_lost`` and the 502s are never retried: the command may have run.
RETRYABLE_503 = frozenset({"queue_timeout", "tunnel_busy", "no_agent", "sandbox_cluster_unavailable", "shutting_down"})

Body = Union[bytes, IO[bytes], None]


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    return scheme, (u.hostname or "").lower(), u.port or {"http": 80, "https": 443}.get(scheme)


class _SameOriginAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but the bearer token goes to the edge's own origin only.

    urllib copies every header to the redirect target, so a redirect (a misconfigured proxy, or
    anyone who can answer for the edge's URL) to another host, port or scheme would receive the
    tenant's token.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


_opener = urllib.request.build_opener(_SameOriginAuthRedirect())


def is_retryable(e: SandboxApiError) -> bool:
    return e.status == 429 or (e.status == 503 and e.code in RETRYABLE_503)


class Transport:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        region: Optional[str] = None,
        retries: int = 2,
        max_retry_after_seconds: int = 30,
        timeout: float = 60.0,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if not token:
            raise ValueError("token is required")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.region = region
        self.retries = max(0, int(retries))
        self.max_retry_after_seconds = max_retry_after_seconds
        self.timeout = timeout

    def open(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Optional[str]]] = None,
        json_body: Any = None,
        body: Body = None,
        content_type: Optional[str] = None,
        accept: str = "application/json",
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
        content_length: Optional[int] = None,
    ) -> Tuple[Any, float]:
        """The open response (2xx) and the call's deadline; anything else raises SandboxApiError."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        # The call's own id: if it times out or is interrupted before the answer, the edge is told
        # to cancel it by this id (nothing else tells a server that a waiting client left).
        client_id = str(uuid.uuid4())
        headers: Dict[str, str] = {
            "Authorization": f"Bearer {self.token}",
            "Accept": accept,
            "X-Request-Id": client_id,
        }
        if self.region:
            headers["X-Sandbox-Region"] = self.region
        data: Body = None
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = body
            headers["Content-Type"] = content_type or "application/octet-stream"
            if content_length is not None:
                headers["Content-Length"] = str(content_length)
        # A file body can be sent once only.
        attempts_left = 0 if (data is not None and not isinstance(data, bytes)) else (
            self.retries if retries is None else max(0, retries)
        )
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxApiError("client_timeout", "no complete answer in time", 0)
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                return _opener.open(req, timeout=remaining), deadline
            except urllib.error.HTTPError as e:
                error = error_from_body(e.code, e.read(), e.headers)
                e.close()
            except KeyboardInterrupt:
                self.cancel(client_id)
                raise
            except (socket.timeout, TimeoutError) as e:
                self.cancel(client_id)
                raise SandboxApiError("client_timeout", f"no answer in time ({e})", 0) from e
            except urllib.error.URLError as e:
                if isinstance(e.reason, (socket.timeout, TimeoutError)):
                    self.cancel(client_id)
                    raise SandboxApiError("client_timeout", f"no answer in time ({e.reason})", 0) from e
                raise SandboxApiError("network_error", str(e.reason), 0) from e
            except OSError as e:
                raise SandboxApiError("network_error", str(e), 0) from e
            wait = error.retry_after_seconds if error.retry_after_seconds is not None else 1
            if attempts_left <= 0 or not is_retryable(error) or wait > self.max_retry_after_seconds:
                raise error
            if time.monotonic() + wait >= deadline:
                raise error
            attempts_left -= 1
            time.sleep(wait)

    def cancel(self, client_id: str) -> None:
        """Best effort: ask the edge to stop the call sent with this X-Request-Id (404 = already over)."""
        url = f"{self.base_url}/v1/requests/{urllib.parse.quote(client_id, safe='')}/cancel"
        req = urllib.request.Request(url, data=b"", method="POST", headers={"Authorization": f"Bearer {self.token}"})
        try:
            _opener.open(req, timeout=5).close()
        except (OSError, urllib.error.URLError):
            pass

    def request(self, method: str, path: str, **kw: Any) -> Tuple[int, Any, bytes]:
        """The whole answer: status, headers and body bytes."""
        # The socket timeout urlopen set (the time left at open) bounds every read of the body.
        res, _ = self.open(method, path, **kw)
        try:
            data = res.read()
        except (socket.timeout, TimeoutError) as e:
            raise SandboxApiError("client_timeout", "the answer did not arrive in time", 0) from e
        finally:
            res.close()
        return res.status, res.headers, data

    def json(self, method: str, path: str, **kw: Any) -> Any:
        status, headers, data = self.request(method, path, **kw)
        if status == 204 or not data:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SandboxApiError(
                "invalid_response", f"HTTP {status} with a body that is not JSON", status, headers.get("x-request-id")
            ) from e

    def events(self, method: str, path: str, terminal: str, **kw: Any) -> Iterator[Dict[str, Any]]:
        """The JSON events of an SSE answer; an ``error`` event raises; an early end is ``invalid_response``."""
        res, _ = self.open(method, path, accept="text/event-stream", **kw)
        request_id = res.headers.get("x-request-id")
        try:
            data_lines = []
            for raw in res:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data_lines.append(line[5:][1:] if line[5:].startswith(" ") else line[5:])
                    continue
                if line != "" or not data_lines:
                    continue
                event = json.loads("\n".join(data_lines))
                data_lines = []
                if event.get("type") == "error":
                    err = event.get("error") or {}
                    raise SandboxApiError(
                        str(err.get("code", "invalid_response")),
                        str(err.get("message", "")),
                        res.status,
                        err.get("requestId") or request_id,
                        err.get("retryAfterSeconds"),
                        err.get("details"),
                    )
                yield event
                if event.get("type") == terminal:
                    return
        except (socket.timeout, TimeoutError) as e:
            raise SandboxApiError("client_timeout", "the stream stalled", 0, request_id) from e
        finally:
            res.close()
        raise SandboxApiError("invalid_response", f"the stream ended before its {terminal} event", 200, request_id)

"""``SandboxClient``: commands in disposable pods, sandboxes that live across calls, chat, the pool."""

from __future__ import annotations

import urllib.parse
from typing import IO, Any, Dict, Iterator, List, Optional, Union

from ._transport import Transport
from .errors import SandboxApiError
from .ports import Ports
from .processes import Processes
from .types import ChatResponse, ExecResult, ExecuteResponse, FileEntry, SandboxInfo

#: Above the command's own timeout: the queue wait (at most 15 s) and the relay.
_EXEC_MARGIN_SECONDS = 30.0
#: Large files move slowly on a loaded link.
_FILE_TIMEOUT_SECONDS = 300.0


def _network(allow: Optional[List[str]], deny: Optional[List[str]]) -> Dict[str, List[str]]:
    """``{allow, deny}`` as the API takes it (an absent list is empty)."""
    return {"allow": list(allow or []), "deny": list(deny or [])}


def _exec_body(command: str, timeout_seconds: Optional[int], stdin: Optional[str], cwd: Optional[str],
               env: Optional[Dict[str, str]], output_encoding: Optional[str],
               network: Optional[Dict[str, List[str]]] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"command": command}
    if network is not None:
        body["network"] = network
    if timeout_seconds is not None:
        body["timeoutSeconds"] = timeout_seconds
    if stdin is not None:
        body["stdin"] = stdin
    if cwd is not None:
        body["cwd"] = cwd
    if env is not None:
        body["env"] = env
    if output_encoding is not None:
        body["outputEncoding"] = output_encoding
    return body


def _file_path(path: str) -> str:
    """The URL path of a sandbox file. ``/workspace/a`` and ``a`` are the same file; dot segments are
    resolved here (a URL cannot carry them: ``files/../..`` would reach another route), and one that
    climbs above the workspace raises ``invalid_path`` before anything is sent. Any other absolute
    path goes to the server as is (it refuses it): the client never rewrites it into the workspace."""
    segments: List[str] = []
    for s in path.split("/"):
        if s in ("", "."):
            continue
        if s == "..":
            if not segments:
                raise SandboxApiError("invalid_path", f"{path} leads outside /workspace", 0)
            segments.pop()
            continue
        segments.append(s)

    def encoded(segs: List[str]) -> str:
        return "/".join(urllib.parse.quote(s, safe="") for s in segs)

    if not path.startswith("/"):
        return encoded(segments)
    if segments[:1] == ["workspace"]:
        return encoded(segments[1:])
    return "/" + encoded(segments)


def _files_url(base: str, path: str, as_dir: bool = False) -> str:
    """The workspace itself is ``…/files`` (no trailing slash); the rest ``…/files/<path>``."""
    p = _file_path(path)
    if p == "":
        return base + "/files"
    return f"{base}/files/{p}/" if as_dir and not p.endswith("/") else f"{base}/files/{p}"


class _Exec:
    """exec and exec_stream, for the one-shot route and for a sandbox's."""

    _transport: Transport
    _exec_path: str

    def exec(self, command: str, timeout_seconds: Optional[int] = None, *, stdin: Optional[str] = None,
             cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
             output_encoding: Optional[str] = None, timeout: Optional[float] = None,
             network: Optional[Dict[str, List[str]]] = None) -> ExecResult:
        """Run ``command`` with ``/bin/sh -c``. A non-zero exit or a timeout is a result, not an error.
        ``network`` (``{"allow": [...], "deny": [...]}``, one-shot ``client.exec`` only): where this
        call's pod may connect; a sandbox's policy is ``sb.set_network``."""
        body = _exec_body(command, timeout_seconds, stdin, cwd, env, output_encoding, network)
        d = self._transport.json("POST", self._exec_path, json_body=body, timeout=self._call_timeout(timeout_seconds, timeout))
        return ExecResult.from_json(d)

    def exec_stream(self, command: str, timeout_seconds: Optional[int] = None, *, stdin: Optional[str] = None,
                    cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                    timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """The events while it runs (``queued``, ``acquired``, ``stdout``, ``stderr``, then ``result``)."""
        body = _exec_body(command, timeout_seconds, stdin, cwd, env, None)
        return self._transport.events("POST", self._exec_path, "result", json_body=body,
                                      timeout=self._call_timeout(timeout_seconds, timeout))

    def _call_timeout(self, timeout_seconds: Optional[int], timeout: Optional[float]) -> float:
        if timeout is not None:
            return timeout
        return max(self._transport.timeout, (timeout_seconds or 30) + _EXEC_MARGIN_SECONDS)


class Sandbox(_Exec):
    """A sandbox that lives across requests. ``with client.create_sandbox() as sb:`` deletes it on exit."""

    def __init__(self, transport: Transport, info: SandboxInfo) -> None:
        self._transport = transport
        self.info = info
        self._base = "/v1/sandboxes/" + urllib.parse.quote(info.id, safe="")
        self._exec_path = self._base + "/exec"
        #: Long-lived processes: ``start()`` returns a Process whose ``output()`` reattaches by itself.
        self.processes = Processes(transport, self._base)
        #: Expiring links to the sandbox's ports: ``link(port, ttl_seconds=…, public=…)``.
        self.ports = Ports(transport, self._base)

    @property
    def id(self) -> str:
        return self.info.id

    def execute(self, command: str, timeout: Optional[int] = None) -> ExecuteResponse:
        """The ``KubernetesPodSandbox`` shape: output (stdout then stderr), exit code, truncated."""
        r = self.exec(command, timeout)
        return ExecuteResponse(output=r.stdout + r.stderr, exit_code=r.exit_code, truncated=r.truncated)

    def write(self, path: str, data: Union[bytes, str, IO[bytes]], *, size: Optional[int] = None) -> Dict[str, Any]:
        """Raw bytes in (atomic, parent directories created). A file object is streamed; give ``size``
        or a seekable file so Content-Length can be sent."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        length: Optional[int] = len(data) if isinstance(data, bytes) else size
        if length is None and not isinstance(data, bytes):
            try:
                pos = data.tell()
                data.seek(0, 2)
                length = data.tell() - pos
                data.seek(pos)
            except (AttributeError, OSError):
                length = None
        res = self._transport.json("PUT", _files_url(self._base, path), body=data,
                                   content_type="application/octet-stream", content_length=length,
                                   timeout=_FILE_TIMEOUT_SECONDS)
        return dict(res or {})

    def read(self, path: str) -> bytes:
        """The file's bytes, exact. A directory raises ``is_a_directory`` (use ``ls``)."""
        status, headers, data = self._transport.request("GET", _files_url(self._base, path),
                                                        accept="application/octet-stream",
                                                        timeout=_FILE_TIMEOUT_SECONDS)
        if (headers.get("content-type") or "").lower().startswith("application/json"):
            raise SandboxApiError("is_a_directory", f"{path} is a directory", status, headers.get("x-request-id"))
        return data

    def ls(self, path: str = "") -> List[FileEntry]:
        """Every entry of a directory: the server answers a page at a time (``truncated``/``next``),
        and this follows the pages (``?after=<next>``)."""
        import json

        entries: List[FileEntry] = []
        after: Optional[str] = None
        while True:
            url = _files_url(self._base, path, as_dir=True)
            if after is not None:
                url += "?after=" + urllib.parse.quote(after, safe="")
            status, headers, data = self._transport.request("GET", url)
            if not (headers.get("content-type") or "").lower().startswith("application/json"):
                raise SandboxApiError("not_a_directory", f"{path} is a file", status, headers.get("x-request-id"))
            page = json.loads(data.decode("utf-8"))
            entries.extend(FileEntry.from_json(e) for e in page.get("entries", []))
            nxt = page.get("next")
            if not page.get("truncated") or not isinstance(nxt, str):
                return entries
            after = nxt

    def remove(self, path: str) -> None:
        self._transport.json("DELETE", _files_url(self._base, path))

    def network(self) -> Dict[str, List[str]]:
        """Its network policy: ``{"allow": [...], "deny": [...]}`` (empty allow: no network)."""
        return dict(self._transport.json("GET", self._base + "/network"))

    def set_network(self, allow: Optional[List[str]] = None, deny: Optional[List[str]] = None) -> Dict[str, List[str]]:
        """Replace its network policy whole: host names, ``*.name``, IPs or CIDRs, each with an
        optional ``:port``. New connections follow it at once; open ones it forbids are closed."""
        return dict(self._transport.json("PUT", self._base + "/network", json_body=_network(allow, deny)))

    def refresh(self) -> SandboxInfo:
        self.info = SandboxInfo.from_json(self._transport.json("GET", self._base))
        return self.info

    def close(self) -> None:
        """Delete it (pod and workspace). One that is already gone is not an error."""
        try:
            self._transport.json("DELETE", self._base)
        except SandboxApiError as e:
            if e.code not in ("sandbox_not_found", "sandbox_expired"):
                raise

    # The lifecycle pydantic-ai-backends' SessionManager drives (start, stop, is_alive): the
    # sandbox already runs once created, so start only checks it is there.
    def start(self) -> None:
        self.refresh()

    def stop(self) -> None:
        self.close()

    def is_alive(self) -> bool:
        try:
            self.refresh()
            return True
        except SandboxApiError as e:
            if e.code in ("sandbox_not_found", "sandbox_expired"):
                return False
            raise

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxClient(_Exec):
    """``SandboxClient(base_url, token)``. 429s and 503s that were not served are retried (``retries``,
    default 2, honouring Retry-After up to ``max_retry_after_seconds``); ``retries=0`` turns it off.
    ``timeout`` (seconds) bounds each call, retries included."""

    def __init__(self, base_url: str, token: str, *, region: Optional[str] = None, retries: int = 2,
                 max_retry_after_seconds: int = 30, timeout: float = 60.0) -> None:
        self._transport = Transport(base_url, token, region=region, retries=retries,
                                    max_retry_after_seconds=max_retry_after_seconds, timeout=timeout)
        self._exec_path = "/v1/exec"

    def chat(self, message: str, session_id: Optional[str] = None, *, timeout: Optional[float] = None,
             network: Optional[Dict[str, List[str]]] = None) -> ChatResponse:
        """``network``: where this request's commands may connect (its own pod, gone with it)."""
        body: Dict[str, Any] = {"message": message}
        if session_id is not None:
            body["sessionId"] = session_id
        if network is not None:
            body["network"] = network
        return ChatResponse.from_json(self._transport.json("POST", "/v1/chat", json_body=body,
                                                           timeout=timeout or max(self._transport.timeout, 300.0)))

    def chat_stream(self, message: str, session_id: Optional[str] = None, *,
                    timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        body: Dict[str, Any] = {"message": message}
        if session_id is not None:
            body["sessionId"] = session_id
        return self._transport.events("POST", "/v1/chat", "done", json_body=body,
                                      timeout=timeout or max(self._transport.timeout, 300.0))

    def pool(self, region: Optional[str] = None) -> Dict[str, Any]:
        """Every region's pool (needs ``sandbox:admin``)."""
        return dict(self._transport.json("GET", "/v1/pool", query={"region": region}))

    def create_sandbox(self, name: Optional[str] = None, *, idle_timeout_seconds: Optional[int] = None,
                       max_lifetime_seconds: Optional[int] = None,
                       env: Optional[Dict[str, str]] = None,
                       network: Optional[Dict[str, List[str]]] = None,
                       secrets: Optional[List[str]] = None) -> Sandbox:
        """``network``: where it may connect (``{"allow": [...], "deny": [...]}``; absent: nowhere).
        ``secrets``: names of the tenant's secrets (``put_secret``) it may use: each is in its env as
        a placeholder the egress proxy replaces with the value only toward the secret's hosts."""
        body: Dict[str, Any] = {}
        if network is not None:
            body["network"] = network
        if secrets is not None:
            body["secrets"] = list(secrets)
        if name is not None:
            body["name"] = name
        if idle_timeout_seconds is not None:
            body["idleTimeoutSeconds"] = idle_timeout_seconds
        if max_lifetime_seconds is not None:
            body["maxLifetimeSeconds"] = max_lifetime_seconds
        if env is not None:
            body["env"] = env
        return Sandbox(self._transport, SandboxInfo.from_json(self._transport.json("POST", "/v1/sandboxes", json_body=body)))

    def get_or_create_sandbox(self, name: str, **kw: Any) -> Sandbox:
        """The tenant's live sandbox called ``name``, or a new one (``SessionManager.get_or_create``)."""
        return self.create_sandbox(name, **kw)

    def get_sandbox(self, sandbox_id: str) -> Sandbox:
        d = self._transport.json("GET", "/v1/sandboxes/" + urllib.parse.quote(sandbox_id, safe=""))
        return Sandbox(self._transport, SandboxInfo.from_json(d))

    def list_sandboxes(self, name: Optional[str] = None) -> List[Sandbox]:
        d = self._transport.json("GET", "/v1/sandboxes", query={"name": name})
        return [Sandbox(self._transport, SandboxInfo.from_json(s)) for s in d.get("sandboxes", [])]

    def delete_sandbox(self, sandbox_id: str) -> None:
        self._transport.json("DELETE", "/v1/sandboxes/" + urllib.parse.quote(sandbox_id, safe=""))

    # ---- secrets (the ``sandbox:secrets`` scope) ----

    def put_secret(self, name: str, value: str, hosts: List[str], *, header: Optional[str] = None,
                   format: Optional[str] = None) -> Dict[str, Any]:
        """Create or replace ``name``: the value is write-only; the egress proxy adds it only to
        requests to ``hosts``, in ``header`` (default Authorization) as ``format`` (default
        ``Bearer {value}``). Returns what ``list_secrets`` shows (never the value)."""
        body: Dict[str, Any] = {"value": value, "hosts": list(hosts)}
        if header is not None:
            body["header"] = header
        if format is not None:
            body["format"] = format
        return dict(self._transport.json("PUT", "/v1/secrets/" + urllib.parse.quote(name, safe=""), json_body=body))

    def list_secrets(self) -> List[Dict[str, Any]]:
        """The tenant's secrets: name, hosts, header, format, updatedAt; never values."""
        return list(self._transport.json("GET", "/v1/secrets").get("secrets", []))

    def delete_secret(self, name: str) -> None:
        self._transport.json("DELETE", "/v1/secrets/" + urllib.parse.quote(name, safe=""))

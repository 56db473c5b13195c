"""Long-lived processes in a sandbox (``sb.processes``; exec mode ``http``: ``api`` answers 501)."""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ._transport import Transport
from .errors import SandboxApiError

# Stream failures that say nothing about the process (the connection, the tunnel or an agent went
# away): the stream is opened again from the last offset. Anything else is raised.
_REATTACH = {
    "network_error",
    "invalid_response",
    "client_timeout",
    "tunnel_closed",
    "agent_unavailable",
    "relay_timeout",
    "no_agent",
    "sandbox_cluster_unavailable",
    "shutting_down",
    "lease_lost",
}


#: Reads of one ``collect`` are at least this far apart (seconds).
_COLLECT_PACE_S = 0.2


@dataclass
class OutputChunk:
    """A piece of a process's output: its bytes and where they start in the whole output."""

    offset: int
    data: bytes
    #: Bytes lost before this chunk because they had left the sandbox's ring (a slow reader).
    dropped: int


class Process:
    """A process in a sandbox, by pid; its state lives in the sandbox, so a handle can be made again."""

    def __init__(self, transport: Transport, base: str, info: Dict[str, Any]) -> None:
        self._transport = transport
        self._base = base
        self.info = info
        #: How it ended (``exitCode``, ``signal``, ``timedOut``, ``outputBytes``), once known.
        self.exit: Optional[Dict[str, Any]] = None
        self._seen(info)

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def _path(self) -> str:
        return f"{self._base}/{self.pid}"

    def _seen(self, info: Dict[str, Any]) -> Dict[str, Any]:
        self.info = info
        if not info.get("running", True):
            self.exit = {k: info.get(k) for k in ("exitCode", "signal", "timedOut", "outputBytes")}
        return info

    def refresh(self) -> Dict[str, Any]:
        return self._seen(self._transport.json("GET", self._path))

    def output(self, since: int = 0, *, reconnects: int = 5) -> Iterator[OutputChunk]:
        """Its output from ``since`` as it comes, until it has exited and every byte was read. A
        dropped stream is reattached from the offset after the last byte received (bytes exact)."""
        at = since
        failures = 0
        while True:
            progressed = False
            try:
                # The agent's keep-alive comments (every 2 s) keep each read well inside the socket
                # timeout; a read that times out all the same is a dropped stream, reattached below.
                res, _ = self._transport.open("GET", self._path + "/output", query={"since": str(at)},
                                              accept="text/event-stream")
                try:
                    event, data = "message", []  # type: str, List[str]
                    for raw in res:
                        line = raw.decode("utf-8").rstrip("\r\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:][1:] if line[5:].startswith(" ") else line[5:])
                        elif line == "" and data:
                            body = json.loads("\n".join(data))
                            name, event, data = event, "message", []
                            if name == "output":
                                chunk = base64.b64decode(body["data"])
                                at = int(body["offset"]) + len(chunk)
                                progressed = True
                                yield OutputChunk(int(body["offset"]), chunk, int(body["dropped"]))
                            elif name == "exit":
                                self.exit = body
                                return
                finally:
                    res.close()
                raise SandboxApiError("invalid_response", "the output stream ended before the exit event", 200)
            except (socket.timeout, TimeoutError, OSError) as e:
                error = SandboxApiError("network_error", str(e), 0)
            except SandboxApiError as e:
                error = e
            if error.code not in _REATTACH:
                raise error
            failures = 1 if progressed else failures + 1
            if failures > reconnects:
                raise error
            time.sleep(min(2.0, 0.1 * 2 ** (failures - 1)))

    def read(self, since: int = 0, *, max_bytes: Optional[int] = None, wait_ms: Optional[int] = None) -> Dict[str, Any]:
        """One read from ``since``: ``{offset, next, dropped, data (bytes), eof}``."""
        query = {"since": str(since), "maxBytes": None if max_bytes is None else str(max_bytes),
                 "waitMs": None if wait_ms is None else str(wait_ms)}
        r = self._transport.json("GET", self._path + "/output", query=query,
                                 timeout=self._transport.timeout + (wait_ms or 0) / 1000)
        return {**r, "data": base64.b64decode(r["data"])}

    def collect(self, since: int = 0, *, wait_ms: int, max_bytes: int = 1024 * 1024) -> Dict[str, Any]:
        """The output that arrives from ``since`` within ``wait_ms`` (the Agents SDK's
        ``yield_time_ms``): ``{data (bytes), next, dropped, exited}``. Reads until the wait is over, it
        has exited and all was read, or ``max_bytes`` came."""
        deadline = time.monotonic() + wait_ms / 1000
        parts: List[bytes] = []
        size, at, dropped = 0, since, 0
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            r = self.read(at, max_bytes=max_bytes - size, wait_ms=left)
            parts.append(r["data"])
            size += len(r["data"])
            dropped += int(r["dropped"])
            at = int(r["next"])
            if r["eof"]:
                self.refresh()
                return {"data": b"".join(parts), "next": at, "dropped": dropped, "exited": True}
            if size >= max_bytes or left == 0:
                return {"data": b"".join(parts), "next": at, "dropped": dropped, "exited": False}
            # Gather a little before the next read: a process printing line by line would cost a request per line.
            time.sleep(min(_COLLECT_PACE_S, max(0.0, deadline - time.monotonic())))

    def write(self, data: Union[bytes, str], *, eof: bool = False) -> Dict[str, Any]:
        """Bytes to its stdin; ``eof=True`` closes it after them. Not idempotent, so retried only on an
        answer that says it was not served (429, 503 queue_timeout …), as every call is."""
        body = data.encode("utf-8") if isinstance(data, str) else data
        return dict(self._transport.json("POST", self._path + "/stdin", query={"eof": "1" if eof else None},
                                         body=body, content_type="application/octet-stream"))

    def close_stdin(self) -> Dict[str, Any]:
        return self.write(b"", eof=True)

    def signal(self, name: str) -> Dict[str, Any]:
        return self._seen(self._transport.json("POST", self._path + "/signal", json_body={"signal": name}))

    def resize(self, cols: int, rows: int) -> Dict[str, Any]:
        """The terminal size of a process started with ``tty=True`` (409 ``not_a_tty`` otherwise)."""
        return self._seen(self._transport.json("POST", self._path + "/resize", json_body={"cols": cols, "rows": rows}))

    def kill(self) -> Dict[str, Any]:
        """Kill its process group (if it runs) and forget it; returns how it ended."""
        return self._seen(self._transport.json("DELETE", self._path))

    def wait(self) -> Dict[str, Any]:
        """Until it has exited: how it ended (its output from here on is read and dropped)."""
        info = self.refresh()
        if not info["running"] and self.exit is not None:
            return self.exit
        for _ in self.output(int(info["outputBytes"])):
            pass
        return self.exit or {}


class Processes:
    """``sb.processes``: start, get and list the sandbox's processes."""

    def __init__(self, transport: Transport, sandbox_base: str) -> None:
        self._transport = transport
        self._base = sandbox_base + "/processes"

    def start(self, command: Optional[str] = None, *, argv: Optional[Sequence[str]] = None,
              cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
              timeout_seconds: Optional[int] = None, tty: Optional[bool] = None,
              cols: Optional[int] = None, rows: Optional[int] = None) -> Process:
        """A shell command line or an ``argv``. Retried only on an answer that says it was not served
        (429, 503 queue_timeout …), as every call is, so it cannot start twice."""
        body: Dict[str, Any] = {"command": command, "argv": list(argv) if argv is not None else None, "cwd": cwd,
                                "env": env, "timeoutSeconds": timeout_seconds, "tty": tty, "cols": cols, "rows": rows}
        info = self._transport.json("POST", self._base, json_body={k: v for k, v in body.items() if v is not None})
        return Process(self._transport, self._base, info)

    def get(self, pid: int) -> Process:
        return Process(self._transport, self._base, self._transport.json("GET", f"{self._base}/{int(pid)}"))

    def list(self) -> List[Process]:
        """Running ones first, then recently exited ones."""
        body = self._transport.json("GET", self._base) or {}
        return [Process(self._transport, self._base, p) for p in body.get("processes", [])]

"""The answers, as dataclasses; field names follow Python, the wire's camelCase is mapped here only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class ExecResult:
    """What a command did (``POST /v1/exec``). A command past its own timeout has ``timed_out=True``."""

    request_id: str
    pod: str
    exit_code: Optional[int]
    signal: Optional[str]
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    truncated: bool
    timed_out: bool
    duration_ms: float
    queue_ms: float
    region: Optional[str] = None

    @staticmethod
    def from_json(d: Dict[str, Any]) -> "ExecResult":
        return ExecResult(
            request_id=str(d.get("requestId", "")),
            pod=str(d.get("pod", "")),
            exit_code=d.get("exitCode"),
            signal=d.get("signal"),
            stdout=d.get("stdout", ""),
            stderr=d.get("stderr", ""),
            stdout_bytes=int(d.get("stdoutBytes", 0)),
            stderr_bytes=int(d.get("stderrBytes", 0)),
            truncated=bool(d.get("truncated", False)),
            timed_out=bool(d.get("timedOut", False)),
            duration_ms=float(d.get("durationMs", 0)),
            queue_ms=float(d.get("queueMs", 0)),
            region=d.get("region"),
        )


@dataclass(frozen=True)
class ExecuteResponse:
    """The ``KubernetesPodSandbox.execute`` shape: ``output`` is stdout followed by stderr."""

    output: str
    exit_code: Optional[int]
    truncated: bool = False


@dataclass(frozen=True)
class SandboxInfo:
    id: str
    region: str
    pod: str
    state: str
    created_at: str
    last_activity_at: str
    expires_at: str
    idle_timeout_seconds: int
    name: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @staticmethod
    def from_json(d: Dict[str, Any]) -> "SandboxInfo":
        return SandboxInfo(
            id=str(d["id"]),
            region=str(d.get("region", "")),
            pod=str(d.get("pod", "")),
            state=str(d.get("state", "")),
            created_at=str(d.get("createdAt", "")),
            last_activity_at=str(d.get("lastActivityAt", "")),
            expires_at=str(d.get("expiresAt", "")),
            idle_timeout_seconds=int(d.get("idleTimeoutSeconds", 0)),
            name=d.get("name"),
            raw=d,
        )


@dataclass(frozen=True)
class FileEntry:
    name: str
    type: str  # "file" | "dir" | "symlink"
    size: int
    mtime: Any

    @staticmethod
    def from_json(d: Dict[str, Any]) -> "FileEntry":
        return FileEntry(str(d["name"]), str(d["type"]), int(d.get("size", 0)), d.get("mtime"))


@dataclass(frozen=True)
class ToolCall:
    id: str
    command: str
    exit_code: Optional[int]
    duration_ms: float
    truncated: bool
    timed_out: bool


@dataclass(frozen=True)
class ChatResponse:
    request_id: str
    session_id: str
    reply: str
    tool_calls: List[ToolCall]
    region: Optional[str] = None
    #: Model calls the turn made (each one costs a quota token).
    model_calls: Optional[int] = None

    @staticmethod
    def from_json(d: Dict[str, Any]) -> "ChatResponse":
        return ChatResponse(
            request_id=str(d.get("requestId", "")),
            session_id=str(d.get("sessionId", "")),
            reply=str(d.get("reply", "")),
            tool_calls=[
                ToolCall(
                    id=str(t.get("id", "")),
                    command=str(t.get("command", "")),
                    exit_code=t.get("exitCode"),
                    duration_ms=float(t.get("durationMs", 0)),
                    truncated=bool(t.get("truncated", False)),
                    timed_out=bool(t.get("timedOut", False)),
                )
                for t in d.get("toolCalls", [])
            ],
            region=d.get("region"),
            model_calls=d.get("modelCalls"),
        )

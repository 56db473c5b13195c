"""One named sandbox per session id, in the shape of pydantic-ai-backends' ``SessionManager``::

    manager = SessionManager(SandboxClient(url, token), idle_timeout_seconds=1800)
    sandbox = await manager.get_or_create("user-123")
    print(sandbox.execute("python script.py").output)
    await manager.release("user-123")

The sandbox is named after the session, so another process (or a restart) with the same session id
finds the same workspace; the server deletes an idle one by itself (``idle_timeout_seconds``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Dict, Optional

from .client import Sandbox, SandboxClient

_NAME_OK = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def sandbox_name(session_id: str) -> str:
    """The sandbox name of a session id: the id itself when it is a valid name ([a-z0-9-], 1-63),
    else a readable slug plus a hash of the id, so distinct ids never share a sandbox."""
    if _NAME_OK.match(session_id):
        return session_id
    slug = re.sub(r"[^a-z0-9]+", "-", session_id.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:16]
    return f"{slug}-{digest}" if slug else f"s-{digest}"


class SessionManager:
    """``get_or_create(session_id)`` → the session's live sandbox; ``release(session_id)`` deletes it."""

    def __init__(self, client: SandboxClient, *, idle_timeout_seconds: Optional[int] = None,
                 max_lifetime_seconds: Optional[int] = None) -> None:
        self._client = client
        self._idle = idle_timeout_seconds
        self._lifetime = max_lifetime_seconds
        self._sessions: Dict[str, Sandbox] = {}
        self._locks: Dict[str, asyncio.Lock] = {}

    @property
    def sessions(self) -> Dict[str, Sandbox]:
        return dict(self._sessions)

    async def get_or_create(self, session_id: str) -> Sandbox:
        # One lock per id: two awaits for the same new session must not both create one.
        async with self._locks.setdefault(session_id, asyncio.Lock()):
            existing = self._sessions.get(session_id)
            if existing is not None and await asyncio.to_thread(existing.is_alive):
                return existing
            sandbox = await asyncio.to_thread(
                self._client.create_sandbox, sandbox_name(session_id),
                idle_timeout_seconds=self._idle, max_lifetime_seconds=self._lifetime)
            self._sessions[session_id] = sandbox
            return sandbox

    async def release(self, session_id: str) -> bool:
        """Delete the session's sandbox. Returns whether this manager had the session."""
        async with self._locks.setdefault(session_id, asyncio.Lock()):
            sandbox = self._sessions.pop(session_id, None)
            if sandbox is None:
                return False
            await asyncio.to_thread(sandbox.stop)
        self._locks.pop(session_id, None)
        return True

    async def shutdown(self) -> None:
        """Release every session."""
        for session_id in list(self._sessions):
            await self.release(session_id)

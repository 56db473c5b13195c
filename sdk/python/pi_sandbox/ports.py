"""Expiring links to a sandbox's ports (``sb.ports``; exec mode ``http``: ``api`` answers 501)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional
from urllib.parse import quote

from ._transport import Transport


class Ports:
    """``link(port, ttl_seconds=…, public=…)`` → ``{id, port, public, createdAt, expiresAt, url}``.

    The URL is its own origin (``https://<id>.<edge host>/?pi_link=<token>``). A private link (the
    default) also needs the tenant's token on every request; a public one only the URL.
    """

    def __init__(self, transport: Transport, sandbox_base: str) -> None:
        self._transport = transport
        self._base = sandbox_base + "/ports"

    def link(self, port: int, *, ttl_seconds: Optional[int] = None, public: Optional[bool] = None) -> Dict[str, Any]:
        body = {"ttlSeconds": ttl_seconds, "public": public}
        # Each call makes a new link: retried only on an answer that says it was not served (429, 503
        # queue_timeout …), as every call is, so it cannot make two.
        return dict(self._transport.json("POST", f"{self._base}/{int(port)}/links",
                                         json_body={k: v for k, v in body.items() if v is not None}))

    def links(self) -> List[Dict[str, Any]]:
        """The open links (unexpired, unrevoked), each with its URL."""
        return list((self._transport.json("GET", f"{self._base}/links") or {}).get("links", []))

    def revoke(self, port: int, link_id: str) -> None:
        """Its next request is 404 link_not_found."""
        self._transport.json("DELETE", f"{self._base}/{int(port)}/links/{quote(link_id, safe='')}")

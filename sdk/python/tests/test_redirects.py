"""The bearer token never follows a redirect to another origin (no stack needed: two local servers)."""

from __future__ import annotations

import http.server
import threading
import unittest
from typing import List, Optional, Tuple

from pi_sandbox._transport import Transport


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 302 to ``redirect_to`` for /start, else 200 ``{}``; records what reached it."""

    seen: List[Tuple[str, Optional[str]]]
    redirect_to: str = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/start":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serve(host: str) -> Tuple[http.server.HTTPServer, type]:
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = http.server.HTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


class Redirects(unittest.TestCase):
    def setUp(self) -> None:
        self.edge, self.edge_seen = _serve("127.0.0.1")
        self.other, self.other_seen = _serve("127.0.0.1")
        self.base = f"http://127.0.0.1:{self.edge.server_port}"

    def tearDown(self) -> None:
        for s in (self.edge, self.other):
            s.shutdown()
            s.server_close()

    def test_authorization_is_dropped_on_a_redirect_to_another_origin(self) -> None:
        # Another port of the same address is another origin; so is another host name.
        for target in (
            f"http://127.0.0.1:{self.other.server_port}/landed",
            f"http://localhost:{self.other.server_port}/landed",
        ):
            self.edge_seen.redirect_to = target
            status, _, body = Transport(self.base, "secret-token").request("GET", "/start")
            self.assertEqual((status, body), (200, b"{}"))
            self.assertEqual(self.edge_seen.seen[-1], ("/start", "Bearer secret-token"))
            self.assertEqual(self.other_seen.seen[-1], ("/landed", None))

    def test_authorization_is_kept_on_a_same_origin_redirect(self) -> None:
        self.edge_seen.redirect_to = f"{self.base}/landed"
        Transport(self.base, "secret-token").request("GET", "/start")
        self.assertEqual(self.edge_seen.seen[-1], ("/landed", "Bearer secret-token"))


if __name__ == "__main__":
    unittest.main()

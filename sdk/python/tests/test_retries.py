"""Which calls are sent again (no stack needed: a scripted local server).

A process start, a stdin write and a port link are not idempotent, so they are retried only on an
answer that says the call was not served (429, the 503s of nothing ran), like every other call; an
answer that may follow a served call (502) is never retried.
"""

from __future__ import annotations

import http.server
import json
import threading
import unittest
from typing import List, Tuple

from pi_sandbox import SandboxApiError
from pi_sandbox._transport import Transport
from pi_sandbox.ports import Ports
from pi_sandbox.processes import Process, Processes

SANDBOX = "/v1/sandboxes/sb-1"
PROCESS = {"pid": 7, "running": True, "outputBytes": 0}
LINK = {"id": "lk-1", "port": 8080, "public": False, "url": "https://lk-1.edge/?pi_link=x"}


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of ``script``; records the paths it saw."""

    script: List[Tuple[int, dict]]
    seen: List[str]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.path)
        status, body = self.script.pop(0)
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # 0: the retry is sent at once, so the test does not sleep.
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _refusal(code: str) -> dict:
    return {"error": {"code": code, "message": code, "requestId": "r-1"}}


class Retries(unittest.TestCase):
    def setUp(self) -> None:
        self.handler = type("Handler", (_Scripted,), {"script": [], "seen": []})
        self.server = http.server.HTTPServer(("127.0.0.1", 0), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.transport = Transport(f"http://127.0.0.1:{self.server.server_port}", "token", retries=2)

    def tearDown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def test_a_start_refused_as_rate_limited_is_sent_again(self) -> None:
        self.handler.script[:] = [(429, _refusal("rate_limited")), (200, PROCESS)]
        proc = Processes(self.transport, SANDBOX).start("sleep 1")
        self.assertEqual(proc.pid, 7)
        self.assertEqual(self.handler.seen, [f"{SANDBOX}/processes"] * 2)

    def test_a_start_answered_502_is_not_sent_again(self) -> None:
        # 502: the agent may have started it; a second start could run the command twice.
        self.handler.script[:] = [(502, _refusal("agent_error")), (200, PROCESS)]
        with self.assertRaises(SandboxApiError) as caught:
            Processes(self.transport, SANDBOX).start("sleep 1")
        self.assertEqual(caught.exception.status, 502)
        self.assertEqual(len(self.handler.seen), 1)

    def test_a_stdin_write_refused_with_queue_timeout_is_sent_again(self) -> None:
        self.handler.script[:] = [(503, _refusal("queue_timeout")), (200, {"written": 5})]
        proc = Process(self.transport, f"{SANDBOX}/processes", PROCESS)
        self.assertEqual(proc.write("hello"), {"written": 5})
        self.assertEqual(self.handler.seen, [f"{SANDBOX}/processes/7/stdin"] * 2)

    def test_a_port_link_refused_as_rate_limited_is_sent_again(self) -> None:
        self.handler.script[:] = [(429, _refusal("rate_limited")), (201, LINK)]
        self.assertEqual(Ports(self.transport, SANDBOX).link(8080), LINK)
        self.assertEqual(self.handler.seen, [f"{SANDBOX}/ports/8080/links"] * 2)

    def test_retries_stop_at_the_clients_limit(self) -> None:
        self.handler.script[:] = [(429, _refusal("rate_limited"))] * 3 + [(200, PROCESS)]
        with self.assertRaises(SandboxApiError) as caught:
            Processes(self.transport, SANDBOX).start("sleep 1")
        self.assertEqual(caught.exception.code, "rate_limited")
        self.assertEqual(len(self.handler.seen), 3)


if __name__ == "__main__":
    unittest.main()

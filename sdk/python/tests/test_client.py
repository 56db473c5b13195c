"""The Python client against the running local stack (real edge, agent and pods).

Configuration from the environment (the vitest runner test/e2e/sdk-python.test.ts sets it):
PI_SANDBOX_URL, PI_SANDBOX_TOKEN (tenant A), PI_SANDBOX_TOKEN_B (tenant B), PI_SANDBOX_ADMIN_TOKEN,
PI_SANDBOX_QUOTA_TOKEN (an admin-scoped token of a tenant no other test uses, for the 429 test),
PI_SANDBOX_QUOTA_BURST (the edge's TENANT_QUOTA_BURST).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import io
import os
import pathlib
import threading
import time
import unittest
import urllib.error
from concurrent.futures import ThreadPoolExecutor

from pi_sandbox import ExecuteResponse, SandboxApiError, SandboxClient, SessionManager, sandbox_name

URL = os.environ.get("PI_SANDBOX_URL", "")
TOKEN = os.environ.get("PI_SANDBOX_TOKEN", "")
MiB = 1024 * 1024


def setUpModule() -> None:
    if not URL or not TOKEN:
        raise RuntimeError("PI_SANDBOX_URL and PI_SANDBOX_TOKEN must name the running stack")


class Source(unittest.TestCase):
    def test_parses_as_python_3_9(self) -> None:
        root = pathlib.Path(__file__).resolve().parent.parent / "pi_sandbox"
        for f in sorted(root.glob("*.py")):
            ast.parse(f.read_text(), filename=str(f), feature_version=(3, 9))
        self.assertTrue((root / "py.typed").exists())


class Exec(unittest.TestCase):
    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_exec_result_and_a_failing_command(self) -> None:
        r = self.client.exec("echo out; echo err >&2; pwd; exit 3", timeout_seconds=10)
        self.assertEqual(r.exit_code, 3)
        self.assertEqual(r.stdout, "out\n/workspace\n")
        self.assertEqual(r.stderr, "err\n")
        self.assertFalse(r.timed_out)
        self.assertTrue(r.pod.startswith("sandbox-"))
        env = self.client.exec("echo $X; cat", env={"X": "y"}, stdin="in")
        self.assertEqual(env.stdout, "y\nin")

    def test_timeout_is_a_result(self) -> None:
        r = self.client.exec("sleep 30", timeout_seconds=1)
        self.assertTrue(r.timed_out)
        self.assertIsNone(r.exit_code)

    def test_exec_stream(self) -> None:
        events = list(self.client.exec_stream("for i in 1 2 3; do echo l$i; sleep 0.2; done"))
        # `queued` comes first only when every pod is busy.
        self.assertEqual([e["type"] for e in events if e["type"] != "queued"][0], "acquired")
        self.assertEqual(events[-1]["type"], "result")
        out = "".join(e["data"] for e in events if e["type"] == "stdout")
        self.assertEqual(out, "l1\nl2\nl3\n")
        self.assertGreaterEqual(sum(1 for e in events if e["type"] == "stdout"), 2)

    def test_chat(self) -> None:
        r = self.client.chat("run `echo py-chat-$((6*7))`")
        self.assertIn("py-chat-42", r.reply)
        self.assertEqual([t.exit_code for t in r.tool_calls], [0])
        again = self.client.chat("again `true`", session_id=r.session_id)
        self.assertEqual(again.session_id, r.session_id)
        types = [e["type"] for e in self.client.chat_stream("stream `echo s`")]
        self.assertEqual(types[-1], "done")
        self.assertIn("tool.call", types)

    def test_pool(self) -> None:
        admin = SandboxClient(URL, os.environ["PI_SANDBOX_ADMIN_TOKEN"])
        regions = admin.pool()["regions"]
        self.assertEqual([r["region"] for r in regions], ["local"])
        with self.assertRaises(SandboxApiError) as cm:
            self.client.pool()
        self.assertEqual((cm.exception.code, cm.exception.status), ("insufficient_scope", 403))


class Errors(unittest.TestCase):
    def test_server_errors(self) -> None:
        client = SandboxClient(URL, TOKEN)
        with self.assertRaises(SandboxApiError) as cm:
            client.exec("true", timeout_seconds=0)
        e = cm.exception
        self.assertEqual((e.code, e.status), ("invalid_request", 400))
        self.assertTrue(any(d["path"] == "timeoutSeconds" for d in e.details))
        self.assertTrue(e.request_id)
        with self.assertRaises(SandboxApiError) as cm:
            client.exec("true", stdin="x" * (3 * MiB))
        self.assertEqual(cm.exception.code, "payload_too_large")
        with self.assertRaises(SandboxApiError) as cm:
            SandboxClient(URL, "not-a-jwt").exec("true")
        self.assertEqual((cm.exception.code, cm.exception.status), ("invalid_token", 401))

    def test_client_errors(self) -> None:
        with self.assertRaises(SandboxApiError) as cm:
            SandboxClient("http://127.0.0.1:9", "t", retries=0).exec("true")
        self.assertEqual((cm.exception.code, cm.exception.status), ("network_error", 0))
        with self.assertRaises(SandboxApiError) as cm:
            SandboxClient(URL, TOKEN).exec("sleep 3", timeout_seconds=10, timeout=0.5)
        self.assertEqual(cm.exception.code, "client_timeout")

    def test_a_timed_out_call_is_cancelled_at_the_edge(self) -> None:
        admin = SandboxClient(URL, os.environ["PI_SANDBOX_ADMIN_TOKEN"])

        def holders() -> set:
            pods = [p for r in admin.pool()["regions"] for p in (r.get("pool") or {}).get("pods", [])]
            return {p["holder"]["requestId"] for p in pods if p.get("holder")}

        before = holders()
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(SandboxClient(URL, TOKEN).exec, "sleep 60", timeout_seconds=120, timeout=3.0)
            started = time.monotonic()
            while not holders() - before:
                self.assertLess(time.monotonic() - started, 3, "the command never held a pod")
                time.sleep(0.05)
            with self.assertRaises(SandboxApiError) as cm:
                call.result()
        self.assertEqual(cm.exception.code, "client_timeout")
        # Without the cancel the pod stays held for the whole `sleep 60`.
        timed_out = time.monotonic()
        while holders() - before:
            self.assertLess(time.monotonic() - timed_out, 10, "the timed-out call's lease was not freed")
            time.sleep(0.1)

    def test_429_retry_honours_retry_after(self) -> None:
        token = os.environ["PI_SANDBOX_QUOTA_TOKEN"]
        burst = int(os.environ.get("PI_SANDBOX_QUOTA_BURST", "40"))
        no_retry = SandboxClient(URL, token, retries=0)

        def one(_: int) -> object:
            try:
                return no_retry.pool()
            except SandboxApiError as e:
                return e

        # Drain the bucket in rounds until a call is refused: how many rounds that takes depends on
        # how fast this machine answers against the refill rate.
        limited: list = []
        for _ in range(20):
            with ThreadPoolExecutor(max_workers=16) as pool:
                results = list(pool.map(one, range(burst + 16)))
            limited = [r for r in results if isinstance(r, SandboxApiError)]
            if limited:
                break
        self.assertTrue(limited, "the burst was not rate limited")
        self.assertEqual((limited[0].code, limited[0].status), ("rate_limited", 429))
        self.assertGreaterEqual(limited[0].retry_after_seconds or 0, 1)

        # A flood keeps the bucket empty while the retrying call starts; it stops once the retrying
        # call has been refused, so the retry after Retry-After finds tokens (a refill may let the
        # first attempt through, more often on a slow machine: then the round is repeated, at most
        # 10 times).
        import pi_sandbox._transport as transport

        for _ in range(10):
            attempts: list = []
            flooding = threading.Event()
            flooding.set()
            # Every request of the client goes through the transport's opener (it drops the token on
            # a cross-origin redirect): record there.
            real_urlopen = transport._opener.open

            def recording(req, data=None, timeout=None):  # type: ignore[no-untyped-def]
                # Record the retrying client's own attempts (it has the marker header).
                mine = req.get_header("X-sandbox-region") == "local"
                try:
                    res = real_urlopen(req, data, timeout)
                    if mine:
                        attempts.append((time.monotonic(), res.status, None))
                    return res
                except urllib.error.HTTPError as e:
                    if mine:
                        attempts.append((time.monotonic(), e.code, e.headers.get("retry-after")))
                        flooding.clear()
                    raise

            def flood() -> None:
                while flooding.is_set():
                    one(0)

            threads = [threading.Thread(target=flood) for _ in range(12)]
            for t in threads:
                t.start()
            time.sleep(0.2)
            transport._opener.open = recording  # type: ignore[method-assign]
            try:
                SandboxClient(URL, token, region="local").pool()
            finally:
                transport._opener.open = real_urlopen  # type: ignore[method-assign]
                flooding.clear()
                for t in threads:
                    t.join()
            if attempts and attempts[0][1] == 429:
                break
        self.assertEqual(attempts[0][1], 429)
        self.assertEqual(attempts[-1][1], 200)
        self.assertLessEqual(len(attempts), 3)
        for prev, cur in zip(attempts, attempts[1:]):
            wait = int(prev[2])
            self.assertGreaterEqual(wait, 1)
            self.assertGreaterEqual(cur[0] - prev[0], wait - 0.05)


class Sandboxes(unittest.TestCase):
    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_with_block_execute_read_write_ls(self) -> None:
        with self.client.create_sandbox() as sb:
            sandbox_id = sb.id
            self.assertEqual(sb.info.state, "ready")
            r = sb.execute("echo hi > a.txt; echo warn >&2; cat a.txt")
            self.assertIsInstance(r, ExecuteResponse)
            self.assertEqual((r.output, r.exit_code, r.truncated), ("hi\nwarn\n", 0, False))
            data = os.urandom(5 * MiB)
            self.assertEqual(sb.write("d/data.bin", data)["size"], 5 * MiB)
            back = sb.read("d/data.bin")
            self.assertEqual(hashlib.sha256(back).hexdigest(), hashlib.sha256(data).hexdigest())
            self.assertEqual(sb.execute("sha256sum d/data.bin").output.split()[0], hashlib.sha256(data).hexdigest())
            sb.write("/workspace/s.txt", io.BytesIO(b"from a file object"))
            self.assertEqual(sb.read("s.txt"), b"from a file object")
            self.assertEqual(sorted((e.type, e.name) for e in sb.ls()), [("dir", "d"), ("file", "a.txt"), ("file", "s.txt")])
            self.assertEqual([(e.name, e.size) for e in sb.ls("d")], [("data.bin", 5 * MiB)])
            # The server answers 10,000 entries a page; ls() follows the pages.
            self.assertEqual(sb.execute("mkdir many && cd many && seq 1 10050 | xargs touch").exit_code, 0)
            many = sb.ls("many")
            self.assertEqual((len(many), len({e.name for e in many})), (10050, 10050))
            sb.remove("s.txt")
            with self.assertRaises(SandboxApiError) as cm:
                sb.read("s.txt")
            self.assertEqual((cm.exception.code, cm.exception.status), ("file_not_found", 404))
            with self.assertRaises(SandboxApiError) as cm:
                sb.read("/etc/passwd")
            self.assertEqual((cm.exception.code, cm.exception.status), ("invalid_path", 400))
            with self.assertRaises(SandboxApiError) as cm:  # refused by the client: a URL cannot carry it
                sb.read("../../etc/passwd")
            self.assertEqual((cm.exception.code, cm.exception.status), ("invalid_path", 0))
            with self.assertRaises(SandboxApiError):
                sb.remove("..")
            self.assertEqual(sb.refresh().id, sandbox_id)
            self.assertEqual(sb.refresh().id, sandbox_id)
            self.assertIn(sandbox_id, [s.id for s in self.client.list_sandboxes()])
            other = SandboxClient(URL, os.environ["PI_SANDBOX_TOKEN_B"])
            with self.assertRaises(SandboxApiError) as cm:
                other.get_sandbox(sandbox_id)
            self.assertEqual((cm.exception.code, cm.exception.status), ("sandbox_not_found", 404))
        with self.assertRaises(SandboxApiError) as cm:
            self.client.get_sandbox(sandbox_id)
        self.assertEqual(cm.exception.code, "sandbox_not_found")

    def test_get_or_create_by_name(self) -> None:
        name = f"py-{int(time.time() * 1000) % 10**8}"
        a = self.client.get_or_create_sandbox(name)
        try:
            a.execute("echo persisted > p.txt")
            b = self.client.get_or_create_sandbox(name)
            self.assertEqual(b.id, a.id)
            self.assertEqual(b.read("p.txt"), b"persisted\n")
            self.assertEqual([s.id for s in self.client.list_sandboxes(name=name)], [a.id])
        finally:
            self.client.delete_sandbox(a.id)


if __name__ == "__main__":
    unittest.main()


class Processes(unittest.TestCase):
    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_output_stdin_signal_kill(self) -> None:
        with self.client.create_sandbox() as sb:
            counter = sb.processes.start("i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.02; done")
            out = b""
            for chunk in counter.output():
                self.assertEqual((chunk.offset, chunk.dropped), (len(out), 0))
                out += chunk.data
            self.assertEqual(out, "".join(f"line{i}\n" for i in range(40)).encode())
            self.assertEqual((counter.exit or {}).get("exitCode"), 0)
            # Read again from an offset: the same bytes.
            self.assertEqual(counter.read(7, max_bytes=5)["data"], out[7:12])
            cat = sb.processes.start(argv=["cat"])
            self.assertEqual(cat.write("hi\n")["written"], 3)
            deadline = time.monotonic() + 30
            while cat.read(0, wait_ms=2000)["next"] < 3 and time.monotonic() < deadline:
                pass
            self.assertEqual(cat.read(0)["data"], b"hi\n")
            cat.close_stdin()
            self.assertEqual(cat.wait().get("exitCode"), 0)
            with self.assertRaises(SandboxApiError) as cm:
                cat.write("more")
            self.assertEqual((cm.exception.code, cm.exception.status), ("process_exited", 409))
            sleeper = sb.processes.start("sleep 600")
            self.assertIn(sleeper.pid, [p.pid for p in sb.processes.list()])
            self.assertEqual(sleeper.signal("SIGTERM")["pid"], sleeper.pid)
            self.assertEqual(sleeper.wait().get("signal"), "SIGTERM")
            self.assertEqual(sleeper.kill()["running"], False)
            with self.assertRaises(SandboxApiError) as cm:
                sb.processes.get(sleeper.pid)
            self.assertEqual((cm.exception.code, cm.exception.status), ("process_not_found", 404))

    def test_collect_a_terminal_and_resize_it(self) -> None:
        with self.client.create_sandbox() as sb:
            sh = sb.processes.start("sh", tty=True, cols=80, rows=24)
            seen, at = b"", 0

            def until(needle: bytes) -> None:
                nonlocal seen, at
                deadline = time.monotonic() + 30
                while needle not in seen and time.monotonic() < deadline:
                    got = sh.collect(at, wait_ms=1000)
                    self.assertEqual(got["dropped"], 0)
                    seen, at = seen + got["data"], got["next"]
                self.assertIn(needle, seen)

            sh.write("stty size\n")
            until(b"24 80")
            self.assertEqual(sh.resize(100, 40)["pid"], sh.pid)
            sh.write("stty size\n")
            until(b"40 100")
            sh.write("exit 4\n")
            deadline = time.monotonic() + 30
            done = sh.collect(at, wait_ms=1000)
            while not done["exited"] and time.monotonic() < deadline:
                done = sh.collect(done["next"], wait_ms=1000)
            self.assertTrue(done["exited"])
            self.assertEqual((sh.exit or {}).get("exitCode"), 4)
            with self.assertRaises(SandboxApiError) as cm:
                sb.processes.start("true").resize(10, 10)
            self.assertIn(cm.exception.code, ("not_a_tty", "process_exited"))


class Ports(unittest.TestCase):
    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_link_list_revoke(self) -> None:
        with self.client.create_sandbox() as sb:
            link = sb.ports.link(8000, ttl_seconds=120, public=True)
            self.assertEqual((link["port"], link["public"]), (8000, True))
            self.assertTrue(link["url"].startswith(f"http://{link['id']}.localhost:"))
            self.assertIn(link["id"], [x["id"] for x in sb.ports.links()])
            sb.ports.revoke(8000, link["id"])
            self.assertNotIn(link["id"], [x["id"] for x in sb.ports.links()])
            with self.assertRaises(SandboxApiError) as cm:
                sb.ports.revoke(8000, link["id"])
            self.assertEqual((cm.exception.code, cm.exception.status), ("link_not_found", 404))
            with self.assertRaises(SandboxApiError) as cm:
                sb.ports.link(0)
            self.assertEqual((cm.exception.code, cm.exception.status), ("port_not_allowed", 400))


class Sessions(unittest.IsolatedAsyncioTestCase):
    """pydantic-ai-backends' SessionManager shape, backed by named sandboxes."""

    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_session_ids_map_to_valid_distinct_names(self) -> None:
        self.assertEqual(sandbox_name("user-123"), "user-123")
        odd = sandbox_name("User@Example.com")
        self.assertRegex(odd, r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
        self.assertNotEqual(odd, sandbox_name("user-example-com"))
        self.assertNotEqual(odd, sandbox_name("user@example.com"))
        self.assertLessEqual(len(sandbox_name("x" * 300)), 63)

    async def test_get_or_create_reuses_releases_and_survives_a_restart(self) -> None:
        manager = SessionManager(self.client, idle_timeout_seconds=120)
        session = "py-session-" + os.urandom(4).hex()
        # Two concurrent first calls: one sandbox.
        first, second = await asyncio.gather(manager.get_or_create(session), manager.get_or_create(session))
        self.assertEqual(first.id, second.id)
        self.assertEqual([s.id for s in self.client.list_sandboxes(name=session)], [first.id])
        first.write("notes.txt", "kept")
        out = first.execute("cat notes.txt; exit 3")
        self.assertEqual((out.output, out.exit_code, out.truncated), ("kept", 3, False))
        self.assertTrue(first.is_alive())

        # A restarted process with the same session id is back in the same workspace.
        restarted = SessionManager(self.client)
        again = await restarted.get_or_create(session)
        self.assertEqual(again.id, first.id)
        self.assertEqual(again.read("notes.txt"), b"kept")

        self.assertTrue(await manager.release(session))
        self.assertFalse(await manager.release(session))
        self.assertFalse(first.is_alive())
        # The other manager's handle notices and makes a fresh sandbox.
        fresh = await restarted.get_or_create(session)
        self.assertNotEqual(fresh.id, first.id)
        await restarted.shutdown()
        self.assertEqual(self.client.list_sandboxes(name=session), [])


class NetworkAndSecrets(unittest.TestCase):
    def setUp(self) -> None:
        self.client = SandboxClient(URL, TOKEN)

    def test_secrets_are_write_only_and_per_tenant(self) -> None:
        value = "py-secret-value-7"
        info = self.client.put_secret("PY_KEY", value, ["api.test"], header="X-Api-Key")
        self.assertEqual((info["name"], info["hosts"], info["header"], info["format"]),
                         ("PY_KEY", ["api.test"], "X-Api-Key", "{value}"))
        try:
            listed = self.client.list_secrets()
            self.assertIn("PY_KEY", [s["name"] for s in listed])
            self.assertNotIn(value, repr(listed))
            other = SandboxClient(URL, os.environ["PI_SANDBOX_TOKEN_B"])
            self.assertNotIn("PY_KEY", [s["name"] for s in other.list_secrets()])
            with self.assertRaises(SandboxApiError) as cm:
                other.delete_secret("PY_KEY")
            self.assertEqual((cm.exception.code, cm.exception.status), ("secret_not_found", 404))
            with self.assertRaises(SandboxApiError) as cm:
                self.client.put_secret("HTTPS_PROXY", "x", ["api.test"])
            self.assertEqual(cm.exception.code, "invalid_request")
        finally:
            self.client.delete_secret("PY_KEY")
        self.assertNotIn("PY_KEY", [s["name"] for s in self.client.list_secrets()])

    def test_network_policy_round_trip(self) -> None:
        with self.client.create_sandbox(network={"deny": ["10.0.0.0/8"]}) as sb:
            self.assertEqual(sb.network(), {"allow": [], "deny": ["10.0.0.0/8"]})
            self.assertEqual(sb.set_network(deny=["192.168.0.0/16"]), {"allow": [], "deny": ["192.168.0.0/16"]})
            with self.assertRaises(SandboxApiError) as cm:
                sb.set_network(allow=["exa mple.com"])
            self.assertEqual((cm.exception.code, cm.exception.status), ("invalid_request", 400))
        try:
            r = self.client.exec("true", network={"allow": ["pkgs.test"]})
            self.assertEqual(r.exit_code, 0)
        except SandboxApiError as e:
            # A stack without the egress proxy refuses a policy that opens anything, and says why.
            self.assertEqual(e.code, "invalid_request")
            self.assertIn("EGRESS=off", str(e))

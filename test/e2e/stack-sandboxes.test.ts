import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadKubeConfig, makeClients } from "../../cluster-agent/k8s/client.ts";
import { type AgentReplica, startAgentReplica } from "../../devstack/agents.ts";
import { childPids, peakRssKiB, resetPeakRss } from "../../devstack/proc-memory.ts";
import { type Stack, startStack } from "../../devstack/stack.ts";
import type { ExecResult, Sandbox, SandboxList } from "../../shared/api.ts";
import { TUNNEL_IDLE } from "../support/tunnel-idle.ts";
import { edgeApi, tempDir, waitFor } from "./stack-helpers.ts";

// Issue 19 through the whole stack: the edge in workerd, real agent processes on the tunnel,
// devcluster pods running the exec server. One region; the agents start one at a time so the test
// knows which replica created a sandbox.

const tmp = tempDir("stack-sandboxes-");
let stack: Stack;
const extra: AgentReplica[] = [];
const MiB = 1024 * 1024;
const REGION = "eu-1";

beforeAll(async () => {
  stack = await startStack({
    dir: tmp.dir,
    regions: [REGION],
    agentsPerRegion: 1,
    poolSize: 2,
    leaseTtlSeconds: 10,
    agentEnv: { LOG_LEVEL: "info", TENANT_MAX_SANDBOXES: "2", LEADER_LEASE_SECONDS: "3" },
    edgeVars: {
      TENANT_QUOTA_BURST: "400",
      TENANT_QUOTA_PER_MINUTE: "6000",
      MAX_FILE_BYTES: String(64 * MiB),
    },
  });
}, 120_000);

afterAll(async () => {
  await Promise.all(extra.map((a) => a.stop()));
  await stack?.close();
  tmp.remove();
});

const api = edgeApi(() => stack);

async function create(body: object = {}, token?: string): Promise<{ status: number; sandbox: Sandbox }> {
  const res = await api("/v1/sandboxes", {
    method: "POST",
    body: JSON.stringify(body),
    ...(token ? { token } : {}),
  });
  const json = (await res.json()) as Sandbox;
  return { status: res.status, sandbox: json };
}

async function exec(id: string, body: object, token?: string): Promise<Response> {
  return api(`/v1/sandboxes/${id}/exec`, {
    method: "POST",
    body: JSON.stringify(body),
    ...(token ? { token } : {}),
  });
}

const put = (id: string, path: string, bytes: Uint8Array<ArrayBuffer>, token?: string) =>
  api(`/v1/sandboxes/${id}/files/${path}`, {
    method: "PUT",
    body: bytes,
    headers: { "content-type": "application/octet-stream" },
    ...(token ? { token } : {}),
  });
const get = (id: string, path: string, token?: string) =>
  api(`/v1/sandboxes/${id}/files/${path}`, token ? { token } : {});

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function k8s() {
  return makeClients(loadKubeConfig(stack.kubeconfig));
}

async function codeOf(res: Response): Promise<string> {
  const body = (await res.json()) as { error?: { code?: string } };
  return body.error?.code ?? `(status ${res.status})`;
}

describe("sandboxes through the edge", () => {
  let sb: Sandbox;

  it("creates a sandbox in a warm pod and runs commands in it across requests", async () => {
    const made = await create({ idleTimeoutSeconds: 120, env: { SB_TOKEN: "tok-5Jq8wZ" } });
    expect(made.status).toBe(201);
    sb = made.sandbox;
    expect(sb.id).toMatch(/^sb\.eu-1\.default\.[a-z0-9]{20}$/);
    expect(sb.state).toBe("ready");
    expect(sb.region).toBe(REGION);
    expect(sb.idleTimeoutSeconds).toBe(120);
    // Three separate requests: state made by one is seen by the next.
    const one = (await (await exec(sb.id, { command: "echo one > a.txt && pwd" })).json()) as ExecResult;
    expect(one.stdout).toBe("/workspace\n");
    expect(one.pod).toBe(sb.pod);
    const two = (await (await exec(sb.id, { command: "echo two >> a.txt" })).json()) as ExecResult;
    expect(two.exitCode).toBe(0);
    const three = (await (await exec(sb.id, { command: "cat a.txt" })).json()) as ExecResult;
    expect(three.stdout).toBe("one\ntwo\n");
    // The sandbox's env reaches its commands, and is sealed on its Lease (never the plain value).
    const env = (await (await exec(sb.id, { command: 'echo "$SB_TOKEN"' })).json()) as ExecResult;
    expect(env.stdout).toBe("tok-5Jq8wZ\n");
    const lease = await k8s().coordination.readNamespacedLease({
      name: sb.pod,
      namespace: stack.namespaceOf(REGION),
    });
    expect(JSON.stringify(lease.metadata?.annotations)).toContain("pi-sandbox-runtime/sandbox-env");
    expect(JSON.stringify(lease)).not.toContain("tok-5Jq8wZ");
    const got = (await (await api(`/v1/sandboxes/${sb.id}`)).json()) as Sandbox;
    expect(got.id).toBe(sb.id);
    expect(Date.parse(got.lastActivityAt)).toBeGreaterThan(Date.parse(sb.lastActivityAt));
  });

  it("round-trips a 10 MiB random binary file byte-exact", async () => {
    const bytes = new Uint8Array(randomBytes(10 * MiB));
    const w = await put(sb.id, "data/blob.bin", bytes);
    expect(w.status).toBe(200);
    expect(await w.json()).toEqual({ path: "/workspace/data/blob.bin", size: 10 * MiB });
    const r = await get(sb.id, "data/blob.bin");
    expect(r.status).toBe(200);
    expect(r.headers.get("content-length")).toBe(String(10 * MiB));
    const back = new Uint8Array(await r.arrayBuffer());
    expect(back.byteLength).toBe(10 * MiB);
    expect(sha(back)).toBe(sha(bytes));
    const sum = (await (
      await exec(sb.id, { command: "sha256sum data/blob.bin | cut -d' ' -f1" })
    ).json()) as ExecResult;
    expect(sum.stdout.trim()).toBe(sha(bytes));
  }, 60_000);

  it("streams a 48 MiB upload through edge, TunnelDO and agent byte-exact", async () => {
    const bytes = new Uint8Array(randomBytes(48 * MiB));
    const w = await put(sb.id, "up/big48.bin", bytes);
    expect(w.status).toBe(200);
    expect(await w.json()).toEqual({ path: "/workspace/up/big48.bin", size: 48 * MiB });
    const back = new Uint8Array(await (await get(sb.id, "up/big48.bin")).arrayBuffer());
    expect(sha(back)).toBe(sha(bytes));
  }, 180_000);

  it("four concurrent 48 MiB uploads all succeed; the agent and workerd each grow by less than 64 MiB", async () => {
    const workerd = childPids(process.pid, "workerd");
    expect(workerd.length).toBe(1);
    const agent = stack.agents[0]!.child.pid!;
    const procs = { workerd: workerd[0]!, agent };
    const before = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, resetPeakRss(pid)]));
    const bodies = Array.from({ length: 4 }, () => new Uint8Array(randomBytes(48 * MiB)));
    const results = await Promise.all(bodies.map((b, i) => put(sb.id, `up/c${i}.bin`, b)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const grew = Object.fromEntries(
      Object.entries(procs).map(([k, pid]) => [k, peakRssKiB(pid) - (before[k] as number)]),
    );
    // The figures for the note (issue 24): growth of each process's peak RSS over its RSS before.
    console.log(`four 48 MiB uploads: peak RSS growth KiB ${JSON.stringify(grew)}`);
    // Whole bodies grew workerd by ~757 MB here (issue 24); streamed as base64 JSON frames, ~100 MiB
    // (this file, load 2.5). With binary frames it is 18–20 MiB (load 3): what is held is each
    // upload's 4 MiB window, the rest is garbage not yet collected. Run alone (`-t`), on a freshly
    // started workerd, the peak is higher (57–113 MiB by machine load): the heap grows to its size.
    expect(grew.workerd).toBeLessThan(64 * 1024);
    expect(grew.agent).toBeLessThan(64 * 1024);
    for (const [i, b] of bodies.entries()) {
      const sum = (await (
        await exec(sb.id, { command: `sha256sum up/c${i}.bin | cut -d' ' -f1` })
      ).json()) as ExecResult;
      expect(sum.stdout.trim()).toBe(sha(b));
    }
    // Give the 192 MiB back: devcluster's workspace is a tmpfs charged to the pod's memory (512 MiB),
    // and the listing rounds below need the exec server's share of it.
    await exec(sb.id, { command: "rm -f up/c0.bin up/c1.bin up/c2.bin up/c3.bin" });
  }, 300_000);

  it("a JSON body over the tunnel's inline size (chunk frames, hash in the head token) is served", async () => {
    const res = await exec(sb.id, { command: "wc -c", stdin: "y".repeat(200 * 1024) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as ExecResult).stdout.trim()).toBe(String(200 * 1024));
  });

  it("files written by the API are seen by exec and the reverse", async () => {
    expect((await put(sb.id, "/workspace/hello.txt", new TextEncoder().encode("from files\n"))).status).toBe(
      200,
    );
    const cat = (await (await exec(sb.id, { command: "cat hello.txt" })).json()) as ExecResult;
    expect(cat.stdout).toBe("from files\n");
    await exec(sb.id, { command: "mkdir -p out && printf '\\377\\000\\001' > out/bin" });
    const r = await get(sb.id, "out/bin");
    expect([...new Uint8Array(await r.arrayBuffer())]).toEqual([255, 0, 1]);
  });

  it("outputEncoding base64 returns binary stdout byte-exact", async () => {
    const res = await exec(sb.id, { command: "printf '\\377\\000\\001'", outputEncoding: "base64" });
    const body = (await res.json()) as ExecResult;
    expect(body.stdout).toBe(Buffer.from([255, 0, 1]).toString("base64"));
    expect(body.stdoutBytes).toBe(3);
  });

  it("lists a directory with or without a trailing slash; deletes files", async () => {
    for (const p of ["data", "data/"]) {
      const res = await get(sb.id, p);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { entries: Array<{ name: string; type: string; size: number }> };
      expect(body.entries).toEqual([
        expect.objectContaining({ name: "blob.bin", type: "file", size: 10 * MiB }),
      ]);
    }
    const del = await api(`/v1/sandboxes/${sb.id}/files/hello.txt`, { method: "DELETE" });
    expect(del.status).toBe(204);
    const again = await get(sb.id, "hello.txt");
    expect(again.status).toBe(404);
    expect(await codeOf(again)).toBe("file_not_found");
  });

  /** 15 nested directories of 240 characters, then 10,000 files of 200: each name ~3.8 KB (once). */
  async function makeDeepTree(): Promise<void> {
    const made = (await (
      await exec(sb.id, {
        command:
          'test -d deep || { p=deep; for i in $(seq 1 15); do p="$p/$(printf "%0240d" $i)"; done; mkdir -p "$p" && cd "$p" && seq -f "%0200g" 1 10000 | xargs touch; }',
        timeoutSeconds: 120,
      })
    ).json()) as ExecResult;
    expect(made.exitCode).toBe(0);
  }

  it("a recursive listing of 10,000 ~3.8 KB names (~40 MB of JSON) comes in pages of at most 1 MiB; agent and workerd hold one page", async () => {
    await makeDeepTree();
    const workerd = childPids(process.pid, "workerd");
    const procs = { workerd: workerd[0]!, agent: stack.agents[0]!.child.pid! };
    const peaks = () => Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, resetPeakRss(pid)]));
    const growth = (before: Record<string, number>) =>
      Object.fromEntries(
        Object.entries(procs).map(([k, pid]) => [k, peakRssKiB(pid) - (before[k] as number)]),
      );
    const names: string[] = [];
    let largest = 0;
    let pages = 0;
    let after: string | undefined;
    let firstPage: Record<string, number> = {};
    const whole = peaks();
    for (;;) {
      const before = pages === 0 ? peaks() : {};
      const q = after === undefined ? "" : `&after=${encodeURIComponent(after)}`;
      const res = await get(sb.id, `deep?recursive=1${q}`);
      expect(res.status).toBe(200);
      const text = await res.text();
      if (pages === 0) firstPage = growth(before);
      largest = Math.max(largest, Buffer.byteLength(text));
      pages++;
      const page = JSON.parse(text) as {
        entries: Array<{ name: string }>;
        truncated: boolean;
        next?: string;
      };
      names.push(...page.entries.map((e) => e.name));
      if (!page.truncated) break;
      after = page.next;
    }
    // The figures for the note: one request (one page), and all the pages one after another (the
    // latter is mostly garbage not yet collected: each request is done with its page when it answers).
    console.log(
      `listing of ${names.length} entries: ${pages} pages, largest ${largest} B; peak RSS growth KiB, first page ${JSON.stringify(firstPage)}, all pages ${JSON.stringify(growth(whole))}`,
    );
    expect(names.length).toBe(15 + 10_000);
    expect(new Set(names).size).toBe(names.length);
    expect(pages).toBeGreaterThanOrEqual(36);
    // A page: 1 MiB of entries, plus the envelope and `next` (one name, at most 4 KiB).
    expect(largest).toBeLessThanOrEqual(1024 * 1024 + 8 * 1024);
    // Whole, this listing is ~40 MB of JSON, which each component held and parsed in one request;
    // a request now carries one page.
    expect(firstPage.agent).toBeLessThan(32 * 1024);
    expect(firstPage.workerd).toBeLessThan(32 * 1024);
  }, 300_000);

  it("rounds of 40 concurrent 1 MiB listing pages give back what they took: TunnelDO accounting at 0 after each, workerd's RSS flat after the first", async () => {
    await makeDeepTree();
    const pid = childPids(process.pid, "workerd")[0]!;
    const rss: number[] = [];
    for (let round = 0; round < 6; round++) {
      const pages = await Promise.all(
        Array.from({ length: 40 }, async () => {
          const res = await get(sb.id, "deep?recursive=1");
          const text = await res.text();
          // The body too: a refusal here (an evicted pod, a cut response) says why in the failure.
          expect([res.status, res.status === 200 ? "" : text]).toEqual([200, ""]);
          return text.length;
        }),
      );
      expect(Math.min(...pages)).toBeGreaterThan(1000 * 1000);
      // Every request gave back its pending entry, its queued bytes and its budget share.
      expect(await stack.edge.tunnelStats(REGION)).toEqual(expect.objectContaining(TUNNEL_IDLE));
      rss.push(resetPeakRss(pid));
    }
    // Measured (40 MiB of pages per round): 226, 287, 291, 293, 260, 286, 320, 302 MB — the first
    // round raises the heap, later ones reuse it. A page kept per request would add 40 MiB a round.
    console.log(`workerd RSS KiB after each round of 40 listing pages: ${JSON.stringify(rss)}`);
    expect(Math.max(...rss.slice(1)) - rss[0]!).toBeLessThan(128 * 1024);
    await exec(sb.id, { command: "rm -rf deep" });
  }, 300_000);

  it("refuses every path that leads outside /workspace, symlinks included", async () => {
    await exec(sb.id, { command: "ln -s /etc etc-link && ln -s / root-link" });
    const bad = [
      "..%2Fescape",
      "a/..%2F..%2Fetc%2Fpasswd",
      "%2Fetc%2Fpasswd",
      "etc-link/passwd",
      "root-link",
    ];
    for (const p of bad) {
      const r = await get(sb.id, p);
      expect([p, r.status, await codeOf(r)]).toEqual([p, 400, "invalid_path"]);
    }
    const w = await put(sb.id, "etc-link/evil", new Uint8Array([1]));
    expect([w.status, await codeOf(w)]).toEqual([400, "invalid_path"]);
  });

  it("refuses a file over MAX_FILE_BYTES with 413 and a PUT without a body with 400", async () => {
    const big = await put(sb.id, "big.bin", new Uint8Array(64 * MiB + 1));
    expect([big.status, await codeOf(big)]).toEqual([413, "payload_too_large"]);
    const none = await api(`/v1/sandboxes/${sb.id}/files/x`, { method: "PUT" });
    expect([none.status, await codeOf(none)]).toEqual([400, "invalid_request"]);
  });

  it("concurrent writes to one path: the last rename wins, never a torn file", async () => {
    const versions = Array.from({ length: 4 }, (_, i) => new Uint8Array(MiB).fill(i + 1));
    const results = await Promise.all(versions.map((v) => put(sb.id, "race.bin", v)));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const back = new Uint8Array(await (await get(sb.id, "race.bin")).arrayBuffer());
    expect(back.byteLength).toBe(MiB);
    expect(versions.some((v) => sha(v) === sha(back))).toBe(true);
  });

  it("another tenant gets 404 sandbox_not_found on every route of it", async () => {
    const b = stack.tokens.tenantB;
    const calls = [
      api(`/v1/sandboxes/${sb.id}`, { token: b }),
      api(`/v1/sandboxes/${sb.id}`, { method: "DELETE", token: b }),
      exec(sb.id, { command: "true" }, b),
      get(sb.id, "a.txt", b),
      put(sb.id, "x", new Uint8Array([1]), b),
      api(`/v1/sandboxes/${sb.id}/files/a.txt`, { method: "DELETE", token: b }),
    ];
    for (const res of await Promise.all(calls))
      expect([res.status, await codeOf(res)]).toEqual([404, "sandbox_not_found"]);
    const list = (await (await api("/v1/sandboxes", { token: b })).json()) as SandboxList;
    expect(list.sandboxes.map((s) => s.id)).not.toContain(sb.id);
    const mine = (await (await api("/v1/sandboxes")).json()) as SandboxList;
    expect(mine.sandboxes.map((s) => s.id)).toContain(sb.id);
    // Malformed, and well-formed for a cluster nobody serves.
    const malformed = await api("/v1/sandboxes/not-an-id");
    expect([malformed.status, await codeOf(malformed)]).toEqual([404, "sandbox_not_found"]);
    const elsewhere = await api(`/v1/sandboxes/sb.eu-1.other.${"a".repeat(20)}`);
    expect([elsewhere.status, await codeOf(elsewhere)]).toEqual([503, "sandbox_cluster_unavailable"]);
  });

  it("get-or-create by name returns the same sandbox with 200; another network is 409, not ignored", async () => {
    const first = await create({ name: "work-1" });
    expect(first.status).toBe(201);
    const second = await create({ name: "work-1" });
    expect(second.status).toBe(200);
    expect(second.sandbox.id).toBe(first.sandbox.id);
    // The same (empty) policy asked for explicitly is the same sandbox; another one is refused.
    expect((await create({ name: "work-1", network: { allow: [], deny: [] } })).status).toBe(200);
    const conflict = await api("/v1/sandboxes", {
      method: "POST",
      body: JSON.stringify({ name: "work-1", network: { deny: ["10.0.0.0/8"] } }),
    });
    expect([conflict.status, await codeOf(conflict)]).toEqual([409, "sandbox_name_conflict"]);
    const net = await api(`/v1/sandboxes/${first.sandbox.id}/network`);
    expect(await net.json()).toEqual({ allow: [], deny: [] });
    const byName = (await (await api("/v1/sandboxes?name=work-1")).json()) as SandboxList;
    expect(byName.sandboxes.map((s) => s.id)).toEqual([first.sandbox.id]);
    expect((await api(`/v1/sandboxes/${first.sandbox.id}`, { method: "DELETE" })).status).toBe(204);
  });

  it("an idle sandbox is deleted after its idle timeout; the warm pool stays at target", async () => {
    const { sandbox } = await create({ idleTimeoutSeconds: 10 });
    // Two sandboxes hold pods now, yet the controller keeps POOL_SIZE (2) free pods ready.
    await waitFor(
      "the warm pool back at its target",
      async () => (await stack.pools())[0]!.pods.filter((p) => p.state === "ready").length === 2,
      20_000,
    );
    await waitFor(
      "the idle sandbox is gone",
      async () => (await api(`/v1/sandboxes/${sandbox.id}`)).status === 404,
      40_000,
      500,
    );
    const ns = stack.namespaceOf(REGION);
    await waitFor("its lease is gone", async () => {
      const leases = await k8s().coordination.listNamespacedLease({ namespace: ns });
      return !leases.items.some((l) => l.metadata?.name === sandbox.pod);
    });
  }, 60_000);

  it("10 concurrent creates over two replicas leave exactly TENANT_MAX_SANDBOXES live; the rest get 429 sandbox_limit", async () => {
    // A second replica: the count must hold across replicas, not only within one cache.
    const second = await startAgentReplica({
      agentId: "agent-eu-1-second",
      env: stack.agentEnvFor(REGION, "agent-eu-1-second"),
      logDir: tmp.dir,
    });
    try {
      const b = stack.tokens.tenantB;
      const results = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const res = await api("/v1/sandboxes", { method: "POST", body: "{}", token: b });
          return { status: res.status, body: (await res.json()) as Sandbox & { error?: { code: string } } };
        }),
      );
      const made = results.filter((r) => r.status === 201).map((r) => r.body.id);
      expect(made).toHaveLength(2);
      expect(results.filter((r) => r.status !== 201).map((r) => [r.status, r.body.error?.code])).toEqual(
        Array.from({ length: 8 }, () => [429, "sandbox_limit"]),
      );
      const listed = (await (await api("/v1/sandboxes", { token: b })).json()) as { sandboxes: Sandbox[] };
      expect(listed.sandboxes.map((x) => x.id).sort()).toEqual([...made].sort());
      // A delete gives the place back at once.
      await api(`/v1/sandboxes/${made[0]}`, { method: "DELETE", token: b });
      const again = await create({}, b);
      expect(again.status).toBe(201);
      for (const id of [made[1], again.sandbox.id])
        await api(`/v1/sandboxes/${id}`, { method: "DELETE", token: b });
    } finally {
      await second.stop();
    }
  }, 120_000);

  it("killing the replica that created a sandbox loses nothing: another replica serves it", async () => {
    const creator = stack.agents[0]!;
    const other = await startAgentReplica({
      agentId: "agent-eu-1-late",
      env: stack.agentEnvFor(REGION, "agent-eu-1-late"),
      logDir: tmp.dir,
    });
    extra.push(other);
    creator.kill();
    await creator.exited;
    const res = await waitFor(
      "the other replica serves the sandbox",
      async () => {
        const r = await exec(sb.id, { command: "cat a.txt" });
        return r.status === 200 ? ((await r.json()) as ExecResult) : undefined;
      },
      30_000,
      250,
    );
    expect(res.stdout).toBe("one\ntwo\n");
  }, 60_000);

  it("deleting a sandbox kills its running command with a clear error; pod and Lease are gone", async () => {
    // The delete comes only once the command runs (its marker file is readable through the API):
    // a command that had not started would get the same 404, but not the "while in use" message.
    const running = exec(sb.id, { command: "touch .running; sleep 30", timeoutSeconds: 60 });
    await waitFor("the command runs", async () => (await get(sb.id, ".running")).status === 200, 30_000, 100);
    const del = await api(`/v1/sandboxes/${sb.id}`, { method: "DELETE" });
    expect(del.status).toBe(204);
    const res = await running;
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    expect([res.status, body.error?.code]).toEqual([404, "sandbox_not_found"]);
    expect(body.error?.message).toMatch(/deleted while in use/);
    const later = await exec(sb.id, { command: "true" });
    expect([later.status, await codeOf(later)]).toEqual([404, "sandbox_not_found"]);
    const ns = stack.namespaceOf(REGION);
    const { core, coordination } = k8s();
    await waitFor("pod and lease gone", async () => {
      const pods = await core.listNamespacedPod({ namespace: ns });
      const leases = await coordination.listNamespacedLease({ namespace: ns });
      return (
        !pods.items.some((p) => p.metadata?.name === sb.pod && !p.metadata?.deletionTimestamp) &&
        !leases.items.some((l) => l.metadata?.name === sb.pod)
      );
    });
  }, 30_000);
});

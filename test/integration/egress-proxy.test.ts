import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createEgressProxy, type EgressProxy } from "../../cluster-agent/egress/proxy.ts";
import { sandboxProxyEnv } from "../../cluster-agent/egress/sandbox-env.ts";
import { newPlaceholder, SecretValue } from "../../cluster-agent/egress/secrets.ts";
import type { EgressEvent, SandboxEgress } from "../../cluster-agent/egress/types.ts";
import { generateCa } from "../../cluster-agent/egress/x509.ts";
import { type EgressPolicy, parseEgressPolicy } from "../../shared/egress-policy.ts";
import { closed, connectThrough, get, tlsOver } from "../support/egress-client.ts";
import {
  type FakeInternet,
  startFakeInternet,
  TEST_FORBIDDEN,
  testResolver,
} from "../support/fake-internet.ts";
import { waitFor } from "../support/wait-for.ts";

// Each "sandbox" is a loopback source address: the proxy knows callers only by where they connect from.
const A = "127.0.0.10";
const B = "127.0.0.11";
const STRANGER = "127.0.0.12";
const SECRET_VALUE = "sk-live-the-real-value-0123456789";

let net: FakeInternet;
let proxy: EgressProxy;
let proxyPort: number;
let clusterCaFile: string;
let dir: string;
const events: EgressEvent[] = [];
const logLines: string[] = [];
const sandboxes = new Map<string, SandboxEgress>();
const placeholder = newPlaceholder();
let gate: Promise<void> | undefined;
let lookups = 0;
let resolveGate: Promise<void> | undefined;
let resolving = 0;

function policy(input: unknown): EgressPolicy {
  const r = parseEgressPolicy(input);
  if (!r.ok) throw new Error(r.issues.join("; "));
  return r.policy;
}

function setPolicy(source: string, name: string, input: unknown) {
  sandboxes.set(source, {
    tenant: source === B ? "tenant-b" : "tenant-a",
    sandbox: name,
    policy: policy(input),
    secrets: new Map([["API_KEY", { placeholder, value: new SecretValue(SECRET_VALUE) }]]),
  });
}

interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

function curl(source: string, args: string[], port = proxyPort): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      "curl",
      [
        "-sS",
        "-v",
        "--max-time",
        "10",
        "--proxy",
        `http://127.0.0.1:${port}`,
        "--interface",
        source,
        ...args,
      ],
      { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, timeout: 15_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const connectVia = (source: string, authority: string, port = proxyPort) =>
  connectThrough(port, source, authority);

beforeAll(async () => {
  net = await startFakeInternet();
  const clusterCa = generateCa("test cluster egress CA");
  dir = mkdtempSync(join(tmpdir(), "egress-test-"));
  clusterCaFile = join(dir, "cluster-ca.pem");
  writeFileSync(clusterCaFile, clusterCa.certPem);
  proxy = createEgressProxy({
    lookup: async (source) => {
      // Read now, answered when the test opens the gate: a lookup that is slow with a stale answer.
      const answer = sandboxes.get(source);
      lookups++;
      if (gate) await gate;
      return answer;
    },
    resolve: async (host) => {
      resolving++;
      if (resolveGate) await resolveGate;
      return testResolver(host);
    },
    forbidden: TEST_FORBIDDEN,
    maxConnectionsPerSandbox: 3,
    ca: clusterCa,
    upstreamCa: net.ca.certPem,
    onEvent: (e) => {
      events.push(e);
      logLines.push(JSON.stringify(e));
    },
  });
  proxyPort = (await proxy.listen(0, "127.0.0.1")).port;
});

afterAll(async () => {
  await proxy?.close();
  await net?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  sandboxes.clear();
  events.length = 0;
});

describe("egress proxy: policy", () => {
  it("with no policy, nothing is reachable", async () => {
    setPolicy(A, "sbx-a", {});
    const r = await curl(A, ["--cacert", net.caFile, `https://pkgs.test:${net.httpsPort}/hello`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/< HTTP\/1\.1 403/);
    expect(r.stderr).toMatch(/x-egress-refused: egress_not_allowed/);
  });

  it("an allowed host works over HTTPS (spliced) and HTTP; another host gets a clear refusal", async () => {
    setPolicy(A, "sbx-a", {
      network: { allow: [`pkgs.test:${net.httpsPort}`, `pkgs.test:${net.httpPort}`] },
    });
    const ok = await curl(A, ["--cacert", net.caFile, `https://pkgs.test:${net.httpsPort}/hello`]);
    expect(ok.stdout).toBe(`hello from pkgs.test:${net.httpsPort} over https\n`);
    const plain = await curl(A, [`http://pkgs.test:${net.httpPort}/hello`]);
    expect(plain.stdout).toBe(`hello from pkgs.test:${net.httpPort} over http\n`);

    const other = await curl(A, ["--cacert", net.caFile, `https://other.test:${net.httpsPort}/hello`]);
    expect(other.code).toBe(56); // curl: CONNECT tunnel failed
    expect(other.stderr).toMatch(/x-egress-refused: egress_not_allowed/);
    const otherPlain = await curl(A, [`http://other.test:${net.httpPort}/hello`]);
    expect(otherPlain.stdout).toBe(
      `egress_not_allowed: other.test:${net.httpPort} is not in this sandbox's allow list\n`,
    );
    expect(otherPlain.stderr).toMatch(/< HTTP\/1\.1 403/);

    await waitFor("four events", () => events.length >= 4);
    const allowed = events
      .filter((e) => e.decision === "allowed")
      .sort((x, y) => x.mode.localeCompare(y.mode));
    expect(allowed.map((e) => [e.mode, e.host, e.tenant, e.sandbox])).toEqual([
      ["http", "pkgs.test", "tenant-a", "sbx-a"],
      ["tunnel", "pkgs.test", "tenant-a", "sbx-a"],
    ]);
    expect(allowed[1]?.bytesDown).toBeGreaterThan(0);
    expect(allowed[1]?.bytesUp).toBeGreaterThan(0);
    expect(events.filter((e) => e.decision === "denied").map((e) => [e.host, e.reason])).toEqual([
      ["other.test", "egress_not_allowed"],
      ["other.test", "egress_not_allowed"],
    ]);
  });

  it("does not pass proxy or hop-by-hop headers upstream on plain HTTP", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpPort}`] } });
    net.seen.length = 0;
    const r = await curl(A, [
      "-H",
      "Proxy-Authorization: Basic c2VjcmV0",
      "-H",
      "Connection: keep-alive, X-Drop-Me",
      "-H",
      "X-Drop-Me: 1",
      "-H",
      "X-Keep-Me: 1",
      `http://pkgs.test:${net.httpPort}/hello`,
    ]);
    expect(r.code).toBe(0);
    const headers = net.seen[0]?.headers ?? {};
    expect(headers["proxy-authorization"]).toBeUndefined();
    expect(headers["x-drop-me"]).toBeUndefined();
    expect(headers["x-keep-me"]).toBe("1");
    expect(headers.host).toBe(`pkgs.test:${net.httpPort}`);
  });

  it("identifies the sandbox by source address only: B gets nothing A is allowed, an unknown source nothing at all", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpPort}`] } });
    setPolicy(B, "sbx-b", {});
    const forged = await curl(B, [
      "-H",
      "x-sandbox: sbx-a",
      "-H",
      "x-tenant: tenant-a",
      `http://pkgs.test:${net.httpPort}/`,
    ]);
    expect(forged.stdout).toMatch(/^egress_not_allowed/);
    const stranger = await curl(STRANGER, [`http://pkgs.test:${net.httpPort}/`]);
    expect(stranger.stdout).toBe(`egress_unknown_source: ${STRANGER} is not a sandbox this proxy serves\n`);
    expect(events.map((e) => [e.tenant, e.reason])).toEqual([
      ["tenant-b", "egress_not_allowed"],
      [undefined, "egress_unknown_source"],
    ]);
  });

  it("refuses names that resolve to forbidden ranges, whatever the policy says, and connects only to the checked address", async () => {
    const port = net.httpsPort;
    setPolicy(A, "sbx-a", {
      network: {
        allow: [`rebind.test:${port}`, `loop.test:${port}`, `ninety-nine.test:${port}`, `mixed.test:${port}`],
      },
    });
    for (const [name, address] of [
      ["rebind.test", "169.254.169.254"],
      ["loop.test", "127.0.0.1"],
      ["ninety-nine.test", "127.0.0.99"],
    ]) {
      const r = await connectVia(A, `${name}:${port}`);
      expect(r.status).toBe(403);
      expect(r.refused).toBe("egress_forbidden_address");
      expect(r.body).toBe(
        `egress_forbidden_address: ${name} resolves to ${address}, which sandboxes may not reach\n`,
      );
    }
    // A literal address in a policy does not help either.
    setPolicy(A, "sbx-a", { network: { allow: ["169.254.169.254:80"] } });
    expect((await curl(A, ["http://169.254.169.254/latest/meta-data/"])).stdout).toMatch(
      /^egress_forbidden_address/,
    );
    setPolicy(A, "sbx-a", { network: { allow: ["[::1]:443", "[fe80::1]:443", "[::ffff:127.0.0.1]:443"] } });
    for (const target of ["[::1]:443", "[fe80::1]:443", "[::ffff:127.0.0.1]:443"])
      expect((await connectVia(A, target)).refused).toBe("egress_forbidden_address");

    setPolicy(A, "sbx-a", { network: { allow: [`mixed.test:${port}`] } });
    const mixed = await connectVia(A, `mixed.test:${port}`);
    expect(mixed.status).toBe(200);
    const tls = await tlsOver(mixed.socket, "mixed.test", net.ca.certPem);
    tls.destroy();
    await waitFor("the mixed.test tunnel's event", () => events.find((e) => e.host === "mixed.test"));
    expect(events.find((e) => e.host === "mixed.test")).toMatchObject({
      decision: "allowed",
      address: "127.0.0.2",
    });
  });

  it("with the production forbidden list, the fake internet itself (on loopback) is out of reach", async () => {
    const production = createEgressProxy({
      lookup: (source) => sandboxes.get(source),
      resolve: testResolver,
      onEvent: () => {},
    });
    const port = (await production.listen(0, "127.0.0.1")).port;
    try {
      setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`, "127.0.0.2:443"] } });
      const byName = await connectVia(A, `pkgs.test:${net.httpsPort}`, port);
      expect([byName.status, byName.refused]).toEqual([403, "egress_forbidden_address"]);
      const byAddress = await connectVia(A, "127.0.0.2:443", port);
      expect([byAddress.status, byAddress.refused]).toEqual([403, "egress_forbidden_address"]);
    } finally {
      await production.close();
    }
  });

  it("refuses a TLS server name other than the CONNECT host, and non-TLS bytes in a tunnel", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    const t = await connectVia(A, `pkgs.test:${net.httpsPort}`);
    expect(t.status).toBe(200);
    await expect(tlsOver(t.socket, "other.test", net.ca.certPem)).rejects.toThrow();
    await waitFor("the SNI refusal", () => events.find((e) => e.reason === "egress_sni_mismatch"));
    expect(net.seen.filter((s) => s.host.startsWith("other.test"))).toEqual([]);

    const plain = await connectVia(A, `pkgs.test:${net.httpsPort}`);
    plain.socket.write(`GET / HTTP/1.1\r\nHost: other.test\r\n\r\n`);
    await closed(plain.socket);
    expect(events.find((e) => e.reason === "egress_not_tls")).toMatchObject({
      decision: "denied",
      host: "pkgs.test",
    });
  });

  it("a runtime policy replace closes the open tunnels the new policy forbids, and only those", async () => {
    setPolicy(A, "sbx-a", {
      network: { allow: [`pkgs.test:${net.httpsPort}`, `other.test:${net.httpsPort}`] },
    });
    const a = await connectVia(A, `pkgs.test:${net.httpsPort}`);
    const tlsA = await tlsOver(a.socket, "pkgs.test", net.ca.certPem);
    expect(await get(tlsA, `pkgs.test:${net.httpsPort}`, "/hello")).toMatch(/hello from pkgs\.test/);
    const b = await connectVia(A, `other.test:${net.httpsPort}`);
    const tlsB = await tlsOver(b.socket, "other.test", net.ca.certPem);
    expect(proxy.openConnections()).toHaveLength(2);

    setPolicy(A, "sbx-a", { network: { allow: [`other.test:${net.httpsPort}`] } });
    expect(await proxy.revalidate()).toBe(1);
    await closed(tlsA);
    expect(tlsB.destroyed).toBe(false);
    expect(await get(tlsB, `other.test:${net.httpsPort}`, "/hello")).toMatch(/hello from other\.test/);
    expect(
      await waitFor("the cut tunnel's event", () => events.find((e) => e.host === "pkgs.test")),
    ).toMatchObject({
      decision: "allowed",
      closedBy: "policy",
    });
    // New connections follow the new policy at once.
    expect((await connectVia(A, `pkgs.test:${net.httpsPort}`)).refused).toBe("egress_not_allowed");
    tlsB.destroy();
    await waitFor("no open connections", () => proxy.openConnections().length === 0);
  });

  it("closes a tunnel whose source address now belongs to another sandbox", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    const t = await connectVia(A, `pkgs.test:${net.httpsPort}`);
    const tls = await tlsOver(t.socket, "pkgs.test", net.ca.certPem);
    // The pod IP was reused for another sandbox with the same policy: its tunnels are not inherited.
    setPolicy(A, "sbx-new", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    expect(await proxy.revalidate()).toBe(1);
    await closed(tls);
    expect(await waitFor("the event", () => events.find((e) => e.host === "pkgs.test"))).toMatchObject({
      sandbox: "sbx-a",
      closedBy: "identity",
    });
  });

  it("a connection admitted on the old policy while a replace ran is closed as it is tracked", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    let open: () => void = () => {};
    gate = new Promise<void>((r) => (open = r));
    const before = lookups;
    const pending = connectVia(A, `pkgs.test:${net.httpsPort}`);
    await waitFor("the CONNECT's lookup", () => lookups > before);
    setPolicy(A, "sbx-a", {});
    expect(await proxy.revalidate()).toBe(0); // nothing tracked yet
    gate = undefined;
    open();
    // Closed before or just after its 200, depending on timing; either way it carries nothing.
    const r = await pending.catch(() => undefined);
    if (r) await closed(r.socket);
    expect(await waitFor("the event", () => events.find((e) => e.host === "pkgs.test"))).toMatchObject({
      decision: "allowed",
      closedBy: "policy",
    });
    expect(proxy.openConnections()).toEqual([]);
  });

  it("caps open connections per sandbox", async () => {
    setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    setPolicy(B, "sbx-b", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
    // Five at once against a cap of 3, all held in name resolution together: the cap still holds.
    let release: () => void = () => {};
    resolveGate = new Promise<void>((r) => (release = r));
    const before = resolving;
    const pending = [1, 2, 3, 4, 5].map(() => connectVia(A, `pkgs.test:${net.httpsPort}`));
    await waitFor("five CONNECTs resolving at once", () => resolving - before === 5);
    resolveGate = undefined;
    release();
    const tries = await Promise.all(pending);
    expect(tries.map((h) => h.status).sort()).toEqual([200, 200, 200, 429, 429]);
    expect(tries.filter((h) => h.status === 429).map((h) => h.refused)).toEqual([
      "egress_connection_limit",
      "egress_connection_limit",
    ]);
    const held = tries.filter((h) => h.status === 200);
    // Another sandbox has its own budget.
    const other = await connectVia(B, `pkgs.test:${net.httpsPort}`);
    expect(other.status).toBe(200);
    for (const h of [...held, other]) h.socket.destroy();
    await waitFor("no open connections", () => proxy.openConnections().length === 0);
  });

  it("caps a sandbox's bytes: over its budget, its open tunnels are cut and new ones refused", async () => {
    const capEvents: EgressEvent[] = [];
    const capped = createEgressProxy({
      lookup: (source) => sandboxes.get(source),
      resolve: testResolver,
      forbidden: TEST_FORBIDDEN,
      maxBytesPerSandbox: 1024 * 1024,
      byteCheckMs: 20,
      onEvent: (e) => capEvents.push(e),
    });
    const port = (await capped.listen(0, "127.0.0.1")).port;
    try {
      setPolicy(A, "sbx-a", { network: { allow: [`pkgs.test:${net.httpsPort}`] } });
      const target = `pkgs.test:${net.httpsPort}`;
      const t = await connectVia(A, target, port);
      const tls = await tlsOver(t.socket, "pkgs.test", net.ca.certPem);
      // Asks for 8 MiB over a 1 MiB budget: cut mid-download, or after it while the tunnel stays open
      // (keep-alive); either way the proxy closes it.
      tls.resume(); // read (and drop) the body, so the download is not held back by backpressure
      tls.write(`GET /bytes?n=${8 * 1024 * 1024} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      await closed(tls);
      expect(
        await waitFor("the cut", () => capEvents.find((e) => e.closedBy === "byte_limit")),
      ).toMatchObject({
        sandbox: "sbx-a",
        decision: "allowed",
      });
      const again = await connectVia(A, target, port);
      expect([again.status, again.refused]).toEqual([429, "egress_byte_limit"]);
      capped.forget("tenant-a", "sbx-a");
      const fresh = await connectVia(A, target, port);
      expect(fresh.status).toBe(200);
      fresh.socket.destroy();
    } finally {
      await capped.close();
    }
  });

  it("closes idle tunnels, spliced and intercepted", async () => {
    const idleEvents: EgressEvent[] = [];
    const idleCa = generateCa("idle test cluster CA");
    const idle = createEgressProxy({
      lookup: (source) => sandboxes.get(source),
      resolve: testResolver,
      forbidden: TEST_FORBIDDEN,
      ca: idleCa,
      upstreamCa: net.ca.certPem,
      timeouts: { idleMs: 200 },
      onEvent: (e) => idleEvents.push(e),
    });
    const port = (await idle.listen(0, "127.0.0.1")).port;
    try {
      setPolicy(A, "sbx-a", {
        network: { allow: [`pkgs.test:${net.httpsPort}`, `api.test:${net.httpsPort}`] },
        secrets: [{ name: "API_KEY", hosts: [`api.test:${net.httpsPort}`] }],
      });
      const spliced = await connectVia(A, `pkgs.test:${net.httpsPort}`, port);
      const tlsS = await tlsOver(spliced.socket, "pkgs.test", net.ca.certPem);
      const intercepted = await connectVia(A, `api.test:${net.httpsPort}`, port);
      const tlsI = await tlsOver(intercepted.socket, "api.test", idleCa.certPem);
      expect(await get(tlsI, `api.test:${net.httpsPort}`, "/hello")).toMatch(/hello from api\.test/);
      await Promise.all([closed(tlsS), closed(tlsI)]);
      await waitFor("both idle events", () => idleEvents.length >= 2);
      expect(idleEvents.map((e) => [e.mode, e.closedBy]).sort()).toEqual([
        ["intercept", "idle"],
        ["tunnel", "idle"],
      ]);
    } finally {
      await idle.close();
    }
  });

  it("counts the bytes each way, spliced and intercepted", async () => {
    setPolicy(A, "sbx-a", {
      network: { allow: [`pkgs.test:${net.httpsPort}`, `api.test:${net.httpsPort}`] },
      secrets: [{ name: "API_KEY", hosts: [`api.test:${net.httpsPort}`] }],
    });
    const n = 3 * 1024 * 1024;
    for (const [host, ca, mode] of [
      ["pkgs.test", net.caFile, "tunnel"],
      ["api.test", clusterCaFile, "intercept"],
    ] as const) {
      const r = await curl(A, [
        "-o",
        "/dev/null",
        "--cacert",
        ca,
        `https://${host}:${net.httpsPort}/bytes?n=${n}`,
      ]);
      expect(r.code).toBe(0);
      const e = await waitFor(`the ${mode} event`, () => events.find((x) => x.host === host));
      expect(e.mode).toBe(mode);
      expect(e.bytesDown).toBeGreaterThan(n);
      expect(e.bytesUp).toBeGreaterThan(100);
      expect(e.bytesUp).toBeLessThan(10_000);
    }
  });
});

describe("egress proxy: secrets", () => {
  const bound = () => ({
    network: { allow: [`api.test:${net.httpsPort}`, `other.test:${net.httpsPort}`] },
    secrets: [{ name: "API_KEY", hosts: [`api.test:${net.httpsPort}`] }],
  });

  it("adds the value only for the bound host; the placeholder goes anywhere else as it is", async () => {
    setPolicy(A, "sbx-a", bound());
    net.seen.length = 0;
    const auth = ["-H", `Authorization: Bearer ${placeholder}`, "-H", `X-Other: ${placeholder}`];
    // The bound host is intercepted: the sandbox trusts the cluster CA, the proxy verifies the real server.
    const api = await curl(A, [
      "--cacert",
      clusterCaFile,
      ...auth,
      `https://api.test:${net.httpsPort}/hello`,
    ]);
    expect(api.stdout).toBe(`hello from api.test:${net.httpsPort} over https\n`);
    const other = await curl(A, [
      "--cacert",
      net.caFile,
      ...auth,
      `https://other.test:${net.httpsPort}/hello`,
    ]);
    expect(other.stdout).toBe(`hello from other.test:${net.httpsPort} over https\n`);

    expect(net.seen.map((s) => [s.host, s.headers.authorization, s.headers["x-other"]])).toEqual([
      [`api.test:${net.httpsPort}`, `Bearer ${SECRET_VALUE}`, placeholder],
      [`other.test:${net.httpsPort}`, `Bearer ${placeholder}`, placeholder],
    ]);
    // An event is emitted when the proxy sees the connection close, which may be after curl exits.
    await waitFor("both connections' events", () => events.length >= 2);
    expect(events.map((e) => [e.host, e.mode, e.decision]).sort()).toEqual([
      ["api.test", "intercept", "allowed"],
      ["other.test", "tunnel", "allowed"],
    ]);
    // The value is in no event, no log line, and nothing the sandbox's client saw.
    for (const text of [...logLines, api.stderr, api.stdout, other.stderr])
      expect(text.includes(SECRET_VALUE)).toBe(false);
  });

  it("requests of one intercepted tunnel share one upstream connection", async () => {
    setPolicy(A, "sbx-a", bound());
    net.seen.length = 0;
    const t = await connectVia(A, `api.test:${net.httpsPort}`);
    const tls = await tlsOver(t.socket, "api.test", readFileSync(clusterCaFile, "utf8"));
    for (let i = 0; i < 3; i++)
      expect(await get(tls, `api.test:${net.httpsPort}`, "/hello")).toMatch(/200 OK/);
    tls.destroy();
    expect(net.seen).toHaveLength(3);
    expect(new Set(net.seen.map((r) => r.clientPort)).size).toBe(1);
  });

  it("request bodies pass through intercepted tunnels and plain HTTP", async () => {
    setPolicy(A, "sbx-a", {
      ...bound(),
      network: { allow: [`api.test:${net.httpsPort}`, `api.test:${net.httpPort}`] },
    });
    const file = join(dir, "body.bin");
    writeFileSync(file, Buffer.alloc(200_000, 0x78));
    const viaTls = await curl(A, [
      "--cacert",
      clusterCaFile,
      "--data-binary",
      `@${file}`,
      `https://api.test:${net.httpsPort}/echo`,
    ]);
    expect(viaTls.stdout).toBe("received 200000 bytes\n");
    const plain = await curl(A, ["--data-binary", `@${file}`, `http://api.test:${net.httpPort}/echo`]);
    expect(plain.stdout).toBe("received 200000 bytes\n");
  });

  it("tools use it from the environment alone: curl and Node's fetch, the secret only as its placeholder", async () => {
    const bundle = join(dir, "bundle.pem");
    // The fake internet's CA stands for the public roots a real bundle holds.
    writeFileSync(bundle, `${net.ca.certPem}${readFileSync(clusterCaFile, "utf8")}`);
    const env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...sandboxProxyEnv({
        proxyUrl: `http://127.0.0.1:${proxyPort}`,
        caBundleFile: bundle,
        placeholders: new Map([["API_KEY", placeholder]]),
      }),
    };
    setPolicy(A, "sbx-a", bound());
    net.seen.length = 0;
    const script = [
      'echo "key=$API_KEY"',
      `curl -sS --max-time 10 --interface ${A} -H "Authorization: Bearer $API_KEY" https://api.test:${net.httpsPort}/hello`,
      `curl -sS --max-time 10 --interface ${A} -H "Authorization: Bearer $API_KEY" https://other.test:${net.httpsPort}/hello`,
    ].join(" && ");
    const sh = await new Promise<string>((resolve, reject) =>
      execFile("sh", ["-c", script], { env, timeout: 20_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout),
      ),
    );
    expect(sh).toBe(
      `key=${placeholder}\nhello from api.test:${net.httpsPort} over https\nhello from other.test:${net.httpsPort} over https\n`,
    );
    expect(net.seen.map((r) => r.headers.authorization)).toEqual([
      `Bearer ${SECRET_VALUE}`,
      `Bearer ${placeholder}`,
    ]);

    // Node's fetch cannot pick its source address: this "sandbox" is 127.0.0.1.
    setPolicy("127.0.0.1", "sbx-node", bound());
    const node = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        [
          "-e",
          `fetch("https://api.test:${net.httpsPort}/hello").then((r) => r.text()).then((t) => process.stdout.write(t))`,
        ],
        { env, timeout: 20_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)),
      ),
    );
    expect(node).toBe(`hello from api.test:${net.httpsPort} over https\n`);
  });

  it("an intercepted tunnel serves its own host only, and refuses an upstream it cannot verify", async () => {
    setPolicy(A, "sbx-a", bound());
    const misdirected = await curl(A, [
      "--cacert",
      clusterCaFile,
      "-H",
      `Host: other.test:${net.httpsPort}`,
      "-H",
      `Authorization: Bearer ${placeholder}`,
      `https://api.test:${net.httpsPort}/hello`,
    ]);
    expect(misdirected.stdout).toBe(
      `egress_misdirected: this tunnel is for api.test:${net.httpsPort} only\n`,
    );

    // A certificate from the right CA for another name is refused too.
    setPolicy(A, "sbx-a", {
      network: { allow: [`wrongcert.test:${net.httpsPort}`] },
      secrets: [{ name: "API_KEY", hosts: [`wrongcert.test:${net.httpsPort}`] }],
    });
    const wrongName = await curl(A, [
      "--cacert",
      clusterCaFile,
      "-H",
      `Authorization: Bearer ${placeholder}`,
      `https://wrongcert.test:${net.httpsPort}/`,
    ]);
    expect(wrongName.stdout).toBe(
      "egress_upstream_tls: wrongcert.test did not present a certificate the proxy trusts\n",
    );
    setPolicy(A, "sbx-a", bound());

    const untrusting = createEgressProxy({
      lookup: (source) => sandboxes.get(source),
      resolve: testResolver,
      forbidden: TEST_FORBIDDEN,
      ca: generateCa("another cluster CA"),
      upstreamCa: generateCa("not the fake internet's CA").certPem,
      onEvent: (e) => logLines.push(JSON.stringify(e)),
    });
    const port = (await untrusting.listen(0, "127.0.0.1")).port;
    try {
      const r = await curl(
        A,
        ["-k", "-H", `Authorization: Bearer ${placeholder}`, `https://api.test:${net.httpsPort}/`],
        port,
      );
      expect(r.stdout).toBe("egress_upstream_tls: api.test did not present a certificate the proxy trusts\n");
    } finally {
      await untrusting.close();
    }
    for (const text of logLines) expect(text.includes(SECRET_VALUE)).toBe(false);
  });
});

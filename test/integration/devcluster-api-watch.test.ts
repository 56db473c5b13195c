import {
  CoordinationV1Api,
  type KubernetesObject,
  makeInformer,
  type V1Lease,
  type V1LeaseList,
  Watch,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApiServer, type TestApiServer } from "../support/devcluster.ts";

const NS = "watch-test";
const LEASES = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`;

interface WatchEvent {
  type: string;
  // biome-ignore lint/suspicious/noExplicitAny: raw watch frames are inspected ad hoc
  object: any;
}

let s: TestApiServer;

beforeAll(async () => {
  s = await startTestApiServer({ namespaces: [NS], historySize: 50, bookmarkIntervalMs: 100 });
});
afterAll(async () => {
  await s?.close();
});

/**
 * Reads a watch until the server ends it (e.g. after an ERROR event) or no event came for
 * `quietMs` or `maxMs` passed (then the client hangs up).
 */
async function readWatch(
  path: string,
  quietMs = 250,
  maxMs = 1_000,
): Promise<{ status: number; events: WatchEvent[]; ended: boolean }> {
  const w = await openWatch(path);
  const deadline = Date.now() + maxMs;
  let seen = -1;
  while (!w.ended() && seen !== w.events.length && Date.now() < deadline) {
    seen = w.events.length;
    await new Promise((r) => setTimeout(r, quietMs));
  }
  const ended = w.ended();
  w.stop();
  return { status: 200, events: w.events, ended };
}

/** An open watch; collects events until `stop()`. */
async function openWatch(path: string): Promise<{
  events: WatchEvent[];
  waitFor(n: number): Promise<WatchEvent[]>;
  ended(): boolean;
  stop(): void;
}> {
  const ctrl = new AbortController();
  const res = await fetch(s.url + path, {
    headers: { Authorization: `Bearer ${s.token}` },
    signal: ctrl.signal,
  });
  expect(res.status).toBe(200);
  const events: WatchEvent[] = [];
  const reader = res.body?.getReader();
  if (!reader) throw new Error("no body");
  let buf = "";
  let ended = false;
  const dec = new TextDecoder();
  const pump = (async () => {
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) {
          ended = true;
          return;
        }
        buf += dec.decode(value, { stream: true });
        let i = buf.indexOf("\n");
        while (i >= 0) {
          events.push(JSON.parse(buf.slice(0, i)) as WatchEvent);
          buf = buf.slice(i + 1);
          i = buf.indexOf("\n");
        }
      }
    } catch {
      // aborted
    }
  })();
  return {
    events,
    async waitFor(n) {
      const deadline = Date.now() + 5_000;
      while (events.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return events;
    },
    ended: () => ended,
    stop() {
      ctrl.abort();
      void pump;
    },
  };
}

function lease(name: string, labels: Record<string, string> = {}) {
  return { metadata: { name, labels }, spec: { holderIdentity: "", leaseDurationSeconds: 30 } };
}

describe("watch", () => {
  it("streams ADDED/MODIFIED/DELETED in order; rejected writes produce no events", async () => {
    const list = await s.raw("GET", LEASES);
    const w = await openWatch(
      `${LEASES}?watch=true&resourceVersion=${list.json.metadata.resourceVersion}&labelSelector=w%3D1`,
    );
    const c = await s.raw("POST", LEASES, lease("w1", { w: "1" }));
    // Rejected: stale PUT (409), invalid (422), duplicate create (409).
    const stale = await s.raw("PUT", `${LEASES}/w1`, {
      ...c.json,
      metadata: { ...c.json.metadata, resourceVersion: "1" },
    });
    expect(stale.status).toBe(409);
    expect(
      (await s.raw("PUT", `${LEASES}/w1`, { ...c.json, spec: { leaseDurationSeconds: 0 } })).status,
    ).toBe(422);
    expect((await s.raw("POST", LEASES, lease("w1", { w: "1" }))).status).toBe(409);
    const u = await s.raw("PUT", `${LEASES}/w1`, { ...c.json, spec: { holderIdentity: "h" } });
    expect(u.status).toBe(200);
    const d = await s.raw("DELETE", `${LEASES}/w1`);
    expect(d.status).toBe(200);
    const events = await w.waitFor(3);
    await new Promise((r) => setTimeout(r, 100));
    w.stop();
    expect(events.map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    expect(events[0]?.object).toMatchObject({ kind: "Lease", apiVersion: "coordination.k8s.io/v1" });
    expect(events[1]?.object.spec.holderIdentity).toBe("h");
    const rvs = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect(rvs[0]).toBe(Number(c.json.metadata.resourceVersion));
    expect(rvs[1]).toBe(Number(u.json.metadata.resourceVersion));
    expect(rvs[2]).toBeGreaterThan(rvs[1] ?? 0);
  });

  it("resumes from an older resourceVersion and replays the later changes in order", async () => {
    const start = (await s.raw("GET", LEASES)).json.metadata.resourceVersion as string;
    await s.raw("POST", LEASES, lease("r1", { r: "1" }));
    await s.raw("POST", LEASES, lease("r2", { r: "1" }));
    await s.raw("PATCH", `${LEASES}/r1`, { spec: { holderIdentity: "x" } }, "application/merge-patch+json");
    await s.raw("DELETE", `${LEASES}/r2`);
    const { status, events } = await readWatch(`${LEASES}?watch=1&resourceVersion=${start}&labelSelector=r`);
    expect(status).toBe(200);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual([
      "ADDED r1",
      "ADDED r2",
      "MODIFIED r1",
      "DELETED r2",
    ]);
    const rvs = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect([...rvs].sort((a, b) => a - b)).toEqual(rvs);
  });

  it("without resourceVersion, a watch starts with ADDED for every existing object", async () => {
    await s.raw("POST", LEASES, lease("e1", { e: "1" }));
    await s.raw("POST", LEASES, lease("e2", { e: "1" }));
    const { events } = await readWatch(`${LEASES}?watch=true&labelSelector=e`);
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(["ADDED e1", "ADDED e2"]);
  });

  it("objects entering/leaving a selector look like ADDED/DELETED", async () => {
    await s.raw("POST", LEASES, lease("mv", { stage: "a" }));
    const rv = (await s.raw("GET", LEASES)).json.metadata.resourceVersion as string;
    await s.raw(
      "PATCH",
      `${LEASES}/mv`,
      { metadata: { labels: { stage: "b" } } },
      "application/merge-patch+json",
    );
    await s.raw(
      "PATCH",
      `${LEASES}/mv`,
      { metadata: { labels: { stage: "a" } } },
      "application/merge-patch+json",
    );
    const { events } = await readWatch(`${LEASES}?watch=true&resourceVersion=${rv}&labelSelector=stage%3Da`);
    expect(events.map((e) => e.type)).toEqual(["DELETED", "ADDED"]);
  });

  it("sends BOOKMARK events when allowWatchBookmarks=true", async () => {
    const { events } = await readWatch(
      `${LEASES}?watch=true&resourceVersion=${(await s.raw("GET", LEASES)).json.metadata.resourceVersion}&allowWatchBookmarks=true`,
    );
    const bm = events.filter((e) => e.type === "BOOKMARK");
    expect(bm.length).toBeGreaterThan(0);
    expect(bm[0]?.object).toMatchObject({ kind: "Lease", apiVersion: "coordination.k8s.io/v1" });
    expect(bm[0]?.object.metadata.resourceVersion).toMatch(/^\d+$/);
  });

  it("a resourceVersion older than the history → 200 with one ERROR event (Status 410 Expired), then the stream ends", async () => {
    const old = Number((await s.raw("GET", LEASES)).json.metadata.resourceVersion);
    for (let i = 0; i < 60; i++) {
      await s.raw("POST", `/api/v1/namespaces/${NS}/secrets`, {
        metadata: { name: `churn-${i}` },
        stringData: { a: "b" },
      });
    }
    const { status, events, ended } = await readWatch(`${LEASES}?watch=true&resourceVersion=${old}`);
    expect(status).toBe(200);
    expect(ended).toBe(true);
    expect(events).toHaveLength(1);
    expect(events[0]?.type).toBe("ERROR");
    expect(events[0]?.object).toMatchObject({
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      reason: "Expired",
      code: 410,
    });
    expect(events[0]?.object.message).toMatch(/^too old resource version: \d+ \(\d+\)$/);
  });

  it("client-node Watch delivers typed events", async () => {
    const w = new Watch(s.kubeConfig());
    const rv = (await s.raw("GET", LEASES)).json.metadata.resourceVersion as string;
    const seen: string[] = [];
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    const req = await w.watch(
      LEASES,
      { resourceVersion: rv, labelSelector: "cn=1" },
      (type: string, obj: KubernetesObject) => {
        seen.push(`${type} ${obj.metadata?.name}`);
        if (seen.length === 2) resolveDone();
      },
      () => resolveDone(),
    );
    await s.raw("POST", LEASES, lease("cn", { cn: "1" }));
    await s.raw("DELETE", `${LEASES}/cn`);
    await Promise.race([done, new Promise((r) => setTimeout(r, 5_000))]);
    req.abort();
    expect(seen).toEqual(["ADDED cn", "DELETED cn"]);
  });
});

describe("informer (makeInformer) against the devcluster", () => {
  it("sees add/update/delete, and re-lists after a 410", async () => {
    // A separate server: tiny history and short watches, so the informer's resume hits 410.
    const t = await startTestApiServer({ namespaces: [NS], historySize: 5, defaultWatchTimeoutMs: 400 });
    const coord = t.kubeConfig().makeApiClient(CoordinationV1Api);
    let lists = 0;
    const listFn = (): Promise<V1LeaseList> => {
      lists++;
      return coord.listNamespacedLease({ namespace: NS });
    };
    const inf = makeInformer<V1Lease>(t.kubeConfig(), LEASES, listFn);
    const log: string[] = [];
    inf.on("add", (o) => log.push(`add ${o.metadata?.name}`));
    inf.on("update", (o) => log.push(`update ${o.metadata?.name} ${o.spec?.holderIdentity}`));
    inf.on("delete", (o) => log.push(`delete ${o.metadata?.name}`));
    const waitLog = async (entry: string) => {
      const deadline = Date.now() + 5_000;
      while (!log.includes(entry) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(log).toContain(entry);
    };
    try {
      await t.raw("POST", LEASES, lease("pre"));
      await inf.start();
      await waitLog("add pre");
      await t.raw("POST", LEASES, lease("i1"));
      await waitLog("add i1");
      await t.raw(
        "PATCH",
        `${LEASES}/i1`,
        { spec: { holderIdentity: "me" } },
        "application/merge-patch+json",
      );
      await waitLog("update i1 me");
      await t.raw("DELETE", `${LEASES}/i1`);
      await waitLog("delete i1");
      const listsBefore = lists;
      // Churn elsewhere pushes the informer's resourceVersion out of the history window; when its
      // watch ends (400 ms) and resumes from that version, the server answers ERROR 410.
      for (let i = 0; i < 10; i++)
        await t.raw("POST", `/api/v1/namespaces/${NS}/secrets`, { metadata: { name: `c${i}` } });
      const deadline = Date.now() + 5_000;
      while (lists === listsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(lists).toBeGreaterThan(listsBefore);
      // Still working after the re-list.
      await t.raw("POST", LEASES, lease("after"));
      await waitLog("add after");
      expect(
        inf
          .list(NS)
          .map((l) => l.metadata?.name)
          .sort(),
      ).toEqual(["after", "pre"]);
    } finally {
      await inf.stop();
      await t.close();
    }
  });
});

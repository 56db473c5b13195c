import { describe, expect, it } from "vitest";
import {
  egressHtml,
  esc,
  headHtml,
  podsHtml,
  queueHtml,
  regionErrorsHtml,
  regionId,
  sandboxesHtml,
  short,
  tileHtml,
  timelineHtml,
} from "../../edge/dashboard/client/render.ts";
import { type DashboardState, initialState, MAX_EGRESS, reduce } from "../../edge/dashboard/reducer.ts";
import { type RegionView, view } from "../../edge/dashboard/view.ts";
import type { PoolEvent, PoolSnapshot } from "../../shared/api.ts";
import { isoAfter, poolEvent, poolSnapshot } from "../support/pool-fixtures.ts";

// The renderer's HTML as a pure function of the view model (the DOM patching is run by the
// browser tests). Every value from the wire is escaped.

const T0 = "2026-11-22T02:00:00.000Z";
const T0MS = Date.parse(T0);
const at = (ms: number) => isoAfter(T0, ms);

/** Folded as they arrive at T0 (the agent's clock agrees), viewed at `viewMs`. */
function regionOf(msgs: Array<PoolSnapshot | PoolEvent>, viewMs = T0MS): RegionView {
  const s = msgs.reduce<DashboardState>(
    (st, m) =>
      reduce(st, "type" in m ? { kind: "event", event: m } : { kind: "snapshot", snapshot: m }, T0MS),
    initialState(),
  );
  return view(s, viewMs).regions[0]!;
}

const EVIL = `<img src=x onerror="alert('x')">`;

describe("dashboard renderer (HTML of each part)", () => {
  it("escapes every character that could open markup or an attribute", () => {
    expect(esc(`<a href="x">'&'</a>`)).toBe("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    expect(esc(null)).toBe("");
    expect(short("abcdefghijklmnop", 4)).toBe("abcd…");
    expect(short(null)).toBe("—");
    expect(regionId("eu west/1")).toBe("region-eu_west_1");
  });

  it("a leased tile shows tenant, request, age and TTL; a ready tile its IP", () => {
    const r = regionOf(
      [
        poolSnapshot({ at: T0, podCount: 2 }),
        poolEvent(
          "lease.acquired",
          { pod: "pi-sandbox-1", requestId: "req-1", tenant: "acme", at: at(1_000) },
          { leaseDurationSeconds: 45 },
        ),
      ],
      T0MS + 11_000,
    );
    const leased = tileHtml(r.pods.find((p) => p.name === "pi-sandbox-1")!);
    expect(leased).toContain('data-state="leased"');
    expect(leased).toContain('<strong data-testid="pod-tenant">acme</strong>');
    expect(leased).toContain('title="req-1"');
    expect(leased).toContain('<dd data-testid="pod-age">10 s</dd>');
    expect(leased).toContain('data-testid="pod-ttl" class="ttl">35 s');
    expect(leased).toContain('aria-label="pi-sandbox-1: leased by acme, request req-1"');
    const ready = tileHtml(r.pods.find((p) => p.name === "pi-sandbox-0")!);
    expect(ready).toContain('<span class="hint">free</span>');
    expect(ready).toContain('<p class="ip">127.0.1.2</p>');
  });

  it("totals, counts, queue and sandboxes come from the view; wire values are escaped", () => {
    const r = regionOf([
      poolSnapshot({
        at: T0,
        podCount: 1,
        totals: { acquisitions: 14, conflicts: 2, queueTimeouts: 1, acquireP50Ms: 7, acquireP99Ms: 1_530 },
        queue: { depth: 1, waiters: [{ requestId: "w1", tenant: EVIL, waitedMs: 2_000 }] },
        sandboxes: [
          {
            id: "sb-1",
            pod: "pi-sandbox-0",
            tenant: "acme",
            name: null,
            idleTimeoutSeconds: 60,
            lastActivityAt: T0,
            expiresAt: at(60_000),
            lastCommand: EVIL,
          },
        ],
      }),
    ]);
    const head = headHtml(r, "x");
    expect(head).toContain('<dd data-testid="total-acquisitions">14</dd>');
    expect(head).toContain('<dd data-testid="total-acquire-p99">1.5 s</dd>');
    expect(podsHtml(r, "x")).toContain(
      '<span class="count s-ready" data-testid="count-ready">1 ready</span>',
    );
    const q = queueHtml(r, "x");
    expect(q).toContain('<span data-testid="queue-depth">1</span>');
    expect(q).toContain('data-testid="queue-waited" aria-label="waited">2.0 s');
    const sb = sandboxesHtml(r, "x");
    expect(sb).toContain('<span data-testid="sandbox-count">1</span>');
    for (const html of [q, sb]) {
      expect(html).not.toContain("<img");
      expect(html).toContain("&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;");
    }
  });

  it("the timeline: one row per execution, exit pills, fresh rows flagged; an empty one says so", () => {
    const empty = regionOf([poolSnapshot({ at: T0, podCount: 1 })]);
    expect(timelineHtml(empty, "x", () => false)).toContain("No executions yet");
    const r = regionOf([
      poolSnapshot({ at: T0, podCount: 1 }),
      poolEvent("exec.started", { requestId: "run", pod: "p", at: at(10) }, { commandPreview: EVIL }),
      poolEvent("exec.started", { requestId: "bad", pod: "q", at: at(5) }, { commandPreview: "false" }),
      poolEvent("exec.finished", { requestId: "bad", pod: "q", at: at(8) }, { exitCode: 1, durationMs: 3 }),
    ]);
    const html = timelineHtml(r, "x", (key) => key.includes("/run/"));
    const rows = html.split("<tr data-testid").slice(1);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toContain('data-request-id="run" data-status="running" class="new"');
    expect(rows[0]).toContain('<span class="pill run">running</span>');
    expect(rows[0]).not.toContain("<img");
    expect(rows[1]).toContain('data-request-id="bad" data-status="finished">');
    expect(rows[1]).toContain('<span class="pill bad">1</span>');
  });

  it("names the regions that are unavailable, and nothing when all are up", () => {
    expect(regionErrorsHtml(new Map())).toBe("");
    expect(regionErrorsHtml(new Map([["us", `no agent ${EVIL}`]]))).toBe(
      `<ul><li>Region <strong>us</strong> is unavailable: no agent ${esc(EVIL)}</li></ul>`,
    );
  });

  it("the egress feed: allowed and denied connections newest first, escaped, bounded; none shows nothing", () => {
    expect(egressHtml(regionOf([poolSnapshot({ at: T0, podCount: 1 })]), "x")).toBe("");
    const events: PoolEvent[] = [
      poolEvent(
        "egress.allowed",
        { tenant: "acme", at: at(1) },
        { host: "pkgs.test", sandboxId: "sb-1", bytesUp: 10, bytesDown: 32 },
      ),
      poolEvent("egress.denied", { tenant: "acme", at: at(2) }, { host: EVIL, reason: "egress_not_allowed" }),
    ];
    for (let i = 0; i < MAX_EGRESS + 5; i++)
      events.push(poolEvent("egress.allowed", { tenant: "bulk", at: at(10 + i) }, { host: `h${i}.test` }));
    const r = regionOf([poolSnapshot({ at: T0, podCount: 1 }), ...events.slice(0, 2)]);
    const html = egressHtml(r, "x");
    expect(html.indexOf('data-decision="denied"')).toBeLessThan(html.indexOf('data-decision="allowed"'));
    expect(html).toContain("<code>pkgs.test:443</code>");
    expect(html).toContain("egress_not_allowed");
    expect(html).toContain('<td class="num">42</td>');
    expect(html).not.toContain("<img");
    const many = regionOf([poolSnapshot({ at: T0, podCount: 1 }), ...events]);
    expect(many.egress).toHaveLength(MAX_EGRESS);
    expect(many.egress[0]?.host).toBe(`h${MAX_EGRESS + 4}.test`);
  });
});

import { describe, expect, it } from "vitest";
import { sandboxesHtml } from "../../edge/dashboard/client/render.ts";
import { type DashboardState, initialState, reduce } from "../../edge/dashboard/reducer.ts";
import { view } from "../../edge/dashboard/view.ts";
import type { PoolEvent, PoolSnapshot } from "../../shared/api.ts";
import { isoAfter, poolEvent, poolSnapshot, sandboxSnapshot } from "../support/pool-fixtures.ts";

// The dashboard's open port links per sandbox: folded from port_link.created / port_link.revoked
// (and a sandbox's end), shown until they expire, never with a token.

const T0 = "2026-12-07T02:00:00.000Z";
const T0MS = Date.parse(T0);
const ID = "sb.local.default.abcdefghij0123456789";
const OTHER = "sb.local.default.zzzzzzzzzz0123456789";

const sandbox = (id: string) => sandboxSnapshot(id, T0);

function fold(msgs: Array<PoolSnapshot | PoolEvent>, from: DashboardState = initialState()): DashboardState {
  return msgs.reduce<DashboardState>(
    (s, m) => reduce(s, "type" in m ? { kind: "event", event: m } : { kind: "snapshot", snapshot: m }, T0MS),
    from,
  );
}
const linksAt = (s: DashboardState, id: string, nowMs: number) =>
  view(s, nowMs).regions[0]?.sandboxes.find((b) => b.id === id)?.links;

const created = (linkId: string, sandboxId: string, port: number, ttlMs: number, pub = false, atMs = 1_000) =>
  poolEvent(
    "port_link.created",
    { tenant: "acme", at: isoAfter(T0, atMs) },
    { sandboxId, linkId, port, public: pub, expiresAt: isoAfter(T0, atMs + ttlMs) },
  );

describe("dashboard port links", () => {
  const opened = fold([
    poolSnapshot({ at: T0, sandboxes: [sandbox(ID), sandbox(OTHER)] }),
    created("pl-aaaaaaaaaaaaaaaaaaaa", ID, 8000, 3_600_000),
    created("pl-bbbbbbbbbbbbbbbbbbbb", ID, 3000, 60_000, true),
    created("pl-cccccccccccccccccccc", OTHER, 5173, 600_000),
  ]);

  it("lists each sandbox's open links, soonest to expire first, until they expire", () => {
    expect(linksAt(opened, ID, T0MS + 1_000)).toEqual([
      { linkId: "pl-bbbbbbbbbbbbbbbbbbbb", port: 3000, public: true, expiresInMs: 60_000 },
      { linkId: "pl-aaaaaaaaaaaaaaaaaaaa", port: 8000, public: false, expiresInMs: 3_600_000 },
    ]);
    expect(linksAt(opened, OTHER, T0MS + 1_000)?.map((l) => l.port)).toEqual([5173]);
    // The public one has expired a minute later: no event says so, the view drops it.
    expect(linksAt(opened, ID, T0MS + 61_000)?.map((l) => l.port)).toEqual([8000]);
  });

  it("a revoked link leaves; a deleted sandbox takes its links, and only its own", () => {
    const revoked = fold(
      [
        poolEvent(
          "port_link.revoked",
          { tenant: "acme", at: isoAfter(T0, 2_000) },
          { sandboxId: ID, linkId: "pl-aaaaaaaaaaaaaaaaaaaa", port: 8000 },
        ),
      ],
      opened,
    );
    expect(linksAt(revoked, ID, T0MS + 3_000)?.map((l) => l.port)).toEqual([3000]);
    const deleted = fold(
      [poolEvent("sandbox.deleted", { pod: "sandbox-1", at: isoAfter(T0, 4_000) }, { sandboxId: ID })],
      revoked,
    );
    expect(Object.keys(deleted.regions.local?.links ?? {})).toEqual(["pl-cccccccccccccccccccc"]);
  });

  it("the sandboxes table shows port, private/public and time left per link", () => {
    const region = view(opened, T0MS + 1_000).regions[0]!;
    const html = sandboxesHtml(region, "r");
    expect(html).toContain('<th scope="col">Port links</th>');
    expect(html).toContain(
      'data-testid="sandbox-link" data-link-id="pl-aaaaaaaaaaaaaaaaaaaa" data-port="8000"',
    );
    expect(html).toMatch(/:3000<\/code> <span class="muted">public, [^<]+ left<\/span>/);
    expect(html).toMatch(/:8000<\/code> <span class="muted">private, [^<]+ left<\/span>/);
  });

  it("an agent's snapshot carries the links its Leases hold: a page opened later lists them; an older agent's keeps what was seen", () => {
    const link = (id: string, port: number, expiresAt: string) => ({
      id,
      port,
      public: false,
      createdAt: T0,
      expiresAt,
    });
    const s = fold([
      poolSnapshot({
        at: T0,
        sandboxes: [
          { ...sandbox(ID), links: [link("pl-dddddddddddddddddddd", 8080, isoAfter(T0, 600_000))] },
        ],
      }),
    ]);
    expect(linksAt(s, ID, T0MS + 1_000)).toEqual([
      { linkId: "pl-dddddddddddddddddddd", port: 8080, public: false, expiresInMs: 599_000 },
    ]);
    // A snapshot of an agent that predates links (no `links`) leaves the page's links as they were.
    const older = fold(
      [poolSnapshot({ at: isoAfter(T0, 2_000), agentId: "agent-b", sandboxes: [sandbox(ID)] })],
      s,
    );
    expect(linksAt(older, ID, T0MS + 3_000)?.map((l) => l.port)).toEqual([8080]);
    // One that lists none (it was revoked meanwhile) replaces them.
    const after = fold(
      [poolSnapshot({ at: isoAfter(T0, 4_000), sandboxes: [{ ...sandbox(ID), links: [] }] })],
      s,
    );
    expect(linksAt(after, ID, T0MS + 5_000)).toEqual([]);
  });
});

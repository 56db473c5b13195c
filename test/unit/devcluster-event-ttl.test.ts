// devcluster's API server drops Events after --event-ttl (1 h by default), as kube-apiserver does,
// so a long `npm start` or bench run does not keep every pod's Scheduled/Started/Killing forever.
import { describe, expect, it } from "vitest";
import { eventKind } from "../../devcluster/apiserver/kinds/index.ts";
import { resourceId } from "../../devcluster/apiserver/kinds/kind.ts";
import { keyOf } from "../../devcluster/apiserver/objects.ts";
import { expireEvents } from "../../devcluster/apiserver/server.ts";
import { Store } from "../../devcluster/apiserver/store.ts";

const HOUR = 3_600_000;
const NOW = Date.parse("2026-12-07T12:00:00Z");

function event(name: string, lastTimestamp: string) {
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name, namespace: "default" },
    lastTimestamp,
    reason: "Started",
  };
}

describe("event TTL", () => {
  it("removes Events last seen more than the TTL ago and keeps the rest", () => {
    const store = new Store(100);
    const r = resourceId(eventKind);
    store.put(r, keyOf("default", "old"), event("old", "2026-12-07T10:59:59Z"));
    store.put(r, keyOf("default", "recent"), event("recent", "2026-12-07T11:30:00Z"));
    expireEvents(store, HOUR, NOW);
    expect(store.list(r).map((e) => (e.metadata as { name: string }).name)).toEqual(["recent"]);
  });
});

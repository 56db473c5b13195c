// devcluster's API server answers `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` with the
// cells kube-apiserver's printers compute (pkg/printers/internalversion), so `kubectl get` shows
// the columns an operator knows from a real cluster.
import { describe, expect, it } from "vitest";
import { eventKind, leaseKind, nodeKind, podKind } from "../../devcluster/apiserver/kinds/index.ts";
import { humanDuration } from "../../devcluster/apiserver/printers.ts";
import { tableVersion, toTable } from "../../devcluster/apiserver/table.ts";
import type { JsonObject } from "../../devcluster/apiserver/types.ts";

const NOW = Date.parse("2026-12-07T12:00:00Z");
const KUBECTL_ACCEPT =
  "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

function ago(seconds: number): string {
  return new Date(NOW - seconds * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

function pod(status: JsonObject, extra: JsonObject = {}): JsonObject {
  return {
    metadata: { name: "p", namespace: "default", creationTimestamp: ago(300), ...extra },
    spec: { containers: [{ name: "a" }, { name: "b" }], nodeName: "devcluster" },
    status,
  };
}

function cells(o: JsonObject, kind = podKind): unknown[] {
  const t = toTable(kind, o, "v1", new URLSearchParams(), NOW);
  return (t.rows as Array<{ cells: unknown[] }>)[0]?.cells ?? [];
}

const running = { running: { startedAt: ago(200) } };

describe("Table negotiation", () => {
  it("kubectl's Accept asks for meta.k8s.io/v1; plain JSON first or alone is not a Table", () => {
    expect(tableVersion(KUBECTL_ACCEPT)).toBe("v1");
    expect(tableVersion("application/json;as=Table;v=v1beta1;g=meta.k8s.io")).toBe("v1beta1");
    expect(tableVersion("application/json")).toBeUndefined();
    expect(tableVersion("application/json, application/json;as=Table;v=v1;g=meta.k8s.io")).toBeUndefined();
    expect(tableVersion("")).toBeUndefined();
  });

  it("a list becomes a Table with the list's resourceVersion and a PartialObjectMetadata per row", () => {
    const list = { kind: "PodList", metadata: { resourceVersion: "42", continue: "abc" }, items: [pod({})] };
    const t = toTable(podKind, list, "v1", new URLSearchParams(), NOW);
    expect(t).toMatchObject({
      kind: "Table",
      apiVersion: "meta.k8s.io/v1",
      metadata: { resourceVersion: "42", continue: "abc" },
    });
    expect(
      (t.columnDefinitions as Array<{ name: string; priority: number }>).map(
        (c) => `${c.name}:${c.priority}`,
      ),
    ).toEqual([
      "Name:0",
      "Ready:0",
      "Status:0",
      "Restarts:0",
      "Age:0",
      "IP:1",
      "Node:1",
      "Nominated Node:1",
      "Readiness Gates:1",
    ]);
    expect((t.rows as JsonObject[])[0]?.object).toMatchObject({
      kind: "PartialObjectMetadata",
      apiVersion: "meta.k8s.io/v1",
      metadata: { name: "p" },
    });
    // includeObject=Object (kubectl --sort-by): the whole object, typed, though list items are not.
    const full = toTable(podKind, list, "v1", new URLSearchParams("includeObject=Object"), NOW);
    expect((full.rows as JsonObject[])[0]?.object).toMatchObject({ kind: "Pod", apiVersion: "v1", spec: {} });
    const none = toTable(podKind, list, "v1", new URLSearchParams("includeObject=None"), NOW);
    expect((none.rows as JsonObject[])[0]?.object).toBeUndefined();
    expect(() => toTable(podKind, list, "v1", new URLSearchParams("includeObject=All"), NOW)).toThrow(
      /includeObject/,
    );
  });
});

describe("pod columns (printPod)", () => {
  it("READY counts ready running containers; STATUS is the phase, or a container's waiting/terminated reason", () => {
    expect(cells(pod({ phase: "Pending" }))).toEqual([
      "p",
      "0/2",
      "Pending",
      "0",
      "5m",
      "<none>",
      "devcluster",
      "<none>",
      "<none>",
    ]);
    const both = [
      { name: "a", ready: true, restartCount: 0, state: running },
      { name: "b", ready: true, restartCount: 0, state: running },
    ];
    expect(cells(pod({ phase: "Running", podIP: "10.0.0.5", containerStatuses: both })).slice(0, 6)).toEqual([
      "p",
      "2/2",
      "Running",
      "0",
      "5m",
      "10.0.0.5",
    ]);
    const crashing: JsonObject[] = [
      { name: "a", ready: true, restartCount: 0, state: running },
      {
        name: "b",
        ready: false,
        restartCount: 3,
        state: { waiting: { reason: "CrashLoopBackOff" } },
        lastState: { terminated: { exitCode: 1, finishedAt: ago(30) } },
      },
    ];
    expect(cells(pod({ phase: "Running", containerStatuses: crashing })).slice(1, 4)).toEqual([
      "1/2",
      "CrashLoopBackOff",
      "3 (30s ago)",
    ]);
    const oom = [
      {
        name: "a",
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 137, reason: "OOMKilled" } },
      },
    ];
    expect(cells(pod({ phase: "Failed", containerStatuses: oom })).slice(1, 3)).toEqual(["0/2", "OOMKilled"]);
    const noReason = [{ name: "a", ready: false, restartCount: 0, state: { terminated: { exitCode: 2 } } }];
    expect(cells(pod({ phase: "Failed", containerStatuses: noReason }))[2]).toBe("ExitCode:2");
  });

  it("an evicted pod shows the reason; a deleting pod shows Terminating; a finished pod carries Completed", () => {
    expect(cells(pod({ phase: "Failed", reason: "Evicted" }))[2]).toBe("Evicted");
    const deleting = pod({ phase: "Running", containerStatuses: [] }, { deletionTimestamp: ago(0) });
    expect(cells(deleting)[2]).toBe("Terminating");
    const done = toTable(podKind, pod({ phase: "Succeeded" }), "v1", new URLSearchParams(), NOW);
    expect((done.rows as JsonObject[])[0]?.conditions).toEqual([
      { type: "Completed", status: "True", reason: "Succeeded", message: "" },
    ]);
  });
});

describe("node, lease and event columns", () => {
  it("node: STATUS from the Ready condition, ROLES from node-role labels, VERSION the kubelet's", () => {
    const node = {
      metadata: {
        name: "n",
        creationTimestamp: ago(3 * 3600),
        labels: { "node-role.kubernetes.io/control-plane": "" },
      },
      spec: { unschedulable: true },
      status: {
        conditions: [{ type: "Ready", status: "True" }],
        addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
        nodeInfo: { kubeletVersion: "v1.26.0-devcluster", containerRuntimeVersion: "runc://1.1" },
      },
    };
    expect(cells(node, nodeKind)).toEqual([
      "n",
      "Ready,SchedulingDisabled",
      "control-plane",
      "3h",
      "v1.26.0-devcluster",
      "127.0.0.1",
      "<none>",
      "<unknown>",
      "<unknown>",
      "runc://1.1",
    ]);
  });

  it("lease: HOLDER is spec.holderIdentity", () => {
    const lease = {
      metadata: { name: "l", creationTimestamp: ago(90) },
      spec: { holderIdentity: "agent-1" },
    };
    expect(cells(lease, leaseKind)).toEqual(["l", "agent-1", "90s"]);
  });

  it("event: LAST SEEN, TYPE, REASON, OBJECT kind/name, MESSAGE (and the wide columns)", () => {
    const ev = {
      metadata: { name: "e.1", namespace: "default", creationTimestamp: ago(600) },
      involvedObject: { kind: "Pod", name: "p", fieldPath: "spec.containers{main}" },
      reason: "Started",
      message: "Started container main\n",
      type: "Normal",
      source: { component: "kubelet", host: "devcluster" },
      firstTimestamp: ago(600),
      lastTimestamp: ago(65),
      count: 2,
    };
    expect(cells(ev, eventKind)).toEqual([
      "65s",
      "Normal",
      "Started",
      "pod/p",
      "spec.containers{main}",
      "kubelet, devcluster",
      "Started container main",
      "10m",
      2,
      "e.1",
    ]);
  });
});

it("ages read as apimachinery's HumanDuration prints them", () => {
  const s = 1000;
  expect(
    [-5 * s, -1 * s, 0, 119 * s, 120 * s, 150 * s, 600 * s, 179 * 60 * s, 3 * 3600 * s + 120 * s].map(
      humanDuration,
    ),
  ).toEqual(["<invalid>", "0s", "0s", "119s", "2m", "2m30s", "10m", "179m", "3h2m"]);
  expect([47 * 3600 * s, 50 * 3600 * s, 9 * 86400 * s, 800 * 86400 * s].map(humanDuration)).toEqual([
    "47h",
    "2d2h",
    "9d",
    "2y70d",
  ]);
});

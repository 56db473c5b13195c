import { describe, expect, it } from "vitest";
import { EventBus } from "../../cluster-agent/events/bus.ts";
import { createMetrics, metricsText, subscribeMetrics } from "../../cluster-agent/telemetry/metrics.ts";
import { eventInput, poolSnapshot } from "../support/pool-fixtures.ts";

/** The value of one series line in Prometheus text, e.g. `pi_sandbox_pool_pods{state="ready"}`. */
function series(text: string, name: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    if (line.slice(0, i) === name) return Number(line.slice(i + 1));
  }
  return undefined;
}

function setup() {
  const bus = new EventBus("agent-t", "eu");
  const metrics = createMetrics();
  const off = subscribeMetrics(bus, metrics, { initial: poolSnapshot({ podCount: 8 }) });
  return { bus, metrics, off, text: () => metrics.registry.metrics() };
}

describe("metrics derived from bus events", () => {
  it("starts with the pool from the initial snapshot and every series present", async () => {
    const { text } = setup();
    const t = await text();
    expect(series(t, 'pi_sandbox_pool_pods{state="ready"}')).toBe(8);
    expect(series(t, 'pi_sandbox_pool_pods{state="leased"}')).toBe(0);
    expect(series(t, 'pi_sandbox_pool_pods{state="failed"}')).toBe(0);
    expect(series(t, "pi_sandbox_tunnel_connected")).toBe(0);
    expect(series(t, "pi_sandbox_lease_conflicts_total")).toBe(0);
    expect(series(t, "pi_sandbox_queue_timeouts_total")).toBe(0);
    expect(t).toContain("# TYPE pi_sandbox_acquire_duration_seconds histogram");
    expect(t).toContain("# TYPE pi_sandbox_queue_wait_seconds histogram");
    expect(t).toContain("# TYPE pi_sandbox_exec_duration_seconds histogram");
  });

  it("lease lifecycle: pods by state, acquisitions, acquire latency and queue wait histograms", async () => {
    const { bus, text } = setup();
    bus.emit(
      eventInput({
        type: "lease.acquired",
        pod: "pi-sandbox-0",
        requestId: "r1",
        tenant: "a",
        data: { acquireMs: 3, queueMs: 0 },
      }),
    );
    bus.emit(
      eventInput({
        type: "lease.acquired",
        pod: "pi-sandbox-1",
        requestId: "r2",
        tenant: "a",
        data: { acquireMs: 40, queueMs: 30 },
      }),
    );
    let t = await text();
    expect(series(t, 'pi_sandbox_pool_pods{state="ready"}')).toBe(6);
    expect(series(t, 'pi_sandbox_pool_pods{state="leased"}')).toBe(2);
    expect(series(t, "pi_sandbox_lease_acquisitions_total")).toBe(2);
    expect(series(t, "pi_sandbox_acquire_duration_seconds_count")).toBe(2);
    expect(series(t, "pi_sandbox_acquire_duration_seconds_sum")).toBeCloseTo(0.043, 6);
    expect(series(t, 'pi_sandbox_acquire_duration_seconds_bucket{le="0.005"}')).toBe(1);
    expect(series(t, 'pi_sandbox_acquire_duration_seconds_bucket{le="0.05"}')).toBe(2);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="acquired"}')).toBe(2);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_bucket{le="0.025",outcome="acquired"}')).toBe(1);

    // A stale release from an older lease of pod 0 must not free it.
    bus.emit(eventInput({ type: "lease.released", pod: "pi-sandbox-0", requestId: "older" }));
    bus.emit(
      eventInput({
        type: "lease.released",
        pod: "pi-sandbox-1",
        requestId: "r2",
        data: { recycle: "replace", fence: 2 },
      }),
    );
    t = await text();
    expect(series(t, 'pi_sandbox_pool_pods{state="leased"}')).toBe(1);
    expect(series(t, 'pi_sandbox_pool_pods{state="recycling"}')).toBe(1);

    bus.emit(eventInput({ type: "pod.deleted", pod: "pi-sandbox-1" }));
    bus.emit(eventInput({ type: "pod.created", pod: "pi-sandbox-8" }));
    t = await text();
    expect(series(t, 'pi_sandbox_pool_pods{state="recycling"}')).toBe(0);
    expect(series(t, 'pi_sandbox_pool_pods{state="starting"}')).toBe(1);
    bus.emit(eventInput({ type: "pod.ready", pod: "pi-sandbox-8" }));
    t = await text();
    expect(series(t, 'pi_sandbox_pool_pods{state="starting"}')).toBe(0);
    expect(series(t, 'pi_sandbox_pool_pods{state="ready"}')).toBe(7);
  });

  it("processes started and how they ended, without tenant labels", async () => {
    const { bus, text } = setup();
    const common = { tenant: "acme-secret-name", pod: "pi-sandbox-1" };
    for (const pid of [1, 2, 3, 4, 5])
      bus.emit(eventInput({ type: "process.started", ...common, data: { pid } }));
    bus.emit(eventInput({ type: "process.exited", ...common, data: { pid: 1, exitCode: 0 } }));
    bus.emit(eventInput({ type: "process.exited", ...common, data: { pid: 2, exitCode: 2 } }));
    bus.emit(
      eventInput({ type: "process.exited", ...common, data: { pid: 3, exitCode: null, signal: "SIGTERM" } }),
    );
    bus.emit(
      eventInput({ type: "process.exited", ...common, data: { pid: 4, exitCode: null, timedOut: true } }),
    );
    bus.emit(
      eventInput({
        type: "process.exited",
        ...common,
        data: { pid: 5, exitCode: null, error: "sandbox_not_found" },
      }),
    );
    const t = await text();
    expect(series(t, "pi_sandbox_processes_started_total")).toBe(5);
    for (const result of ["ok", "nonzero", "killed", "timeout", "lost"]) {
      expect(series(t, `pi_sandbox_processes_exited_total{result="${result}"}`), result).toBe(1);
    }
    expect(t).not.toContain("acme-secret-name");
  });

  it("port links opened and revoked, without tenant, sandbox or link labels", async () => {
    const { bus, text } = setup();
    const common = { tenant: "acme-secret-name" };
    bus.emit(
      eventInput({ type: "port_link.created", ...common, data: { linkId: "pl-secretlinkid0000000" } }),
    );
    bus.emit(eventInput({ type: "port_link.created", ...common }));
    bus.emit(
      eventInput({ type: "port_link.revoked", ...common, data: { linkId: "pl-secretlinkid0000000" } }),
    );
    const t = await text();
    expect(series(t, 'pi_sandbox_port_link_events_total{event="created"}')).toBe(2);
    expect(series(t, 'pi_sandbox_port_link_events_total{event="revoked"}')).toBe(1);
    expect(t).not.toContain("acme-secret-name");
    expect(t).not.toContain("pl-secretlinkid");
    expect(t).not.toContain("sb.local");
  });

  it("conflicts, queue depth, queue timeouts, lost and expired leases", async () => {
    const { bus, text } = setup();
    bus.emit(eventInput({ type: "lease.conflict", pod: "pi-sandbox-2", requestId: "r" }));
    bus.emit(eventInput({ type: "lease.conflict", pod: "pi-sandbox-3", requestId: "r" }));
    bus.emit(eventInput({ type: "queue.entered", requestId: "q1", tenant: "acme-secret-name" }));
    bus.emit(eventInput({ type: "queue.entered", requestId: "q2", tenant: "acme-secret-name" }));
    bus.emit(eventInput({ type: "queue.entered", requestId: "q3", tenant: "globex" }));
    let t = await text();
    expect(series(t, "pi_sandbox_lease_conflicts_total")).toBe(2);
    expect(series(t, "pi_sandbox_queue_depth")).toBe(3);
    // Fairness is visible, tenants' names are not.
    expect(series(t, "pi_sandbox_queue_tenants")).toBe(2);
    expect(series(t, "pi_sandbox_queue_depth_largest_tenant")).toBe(2);
    expect(t).not.toContain("acme-secret-name");
    expect(t).not.toContain("globex");
    bus.emit(eventInput({ type: "queue.timeout", requestId: "q1", data: { waitedMs: 15_000 } }));
    bus.emit(eventInput({ type: "queue.left", requestId: "q2", data: { reason: "aborted", waitedMs: 200 } }));
    bus.emit(
      eventInput({
        type: "lease.acquired",
        pod: "pi-sandbox-4",
        requestId: "q3",
        data: { acquireMs: 900, queueMs: 880 },
      }),
    );
    bus.emit(eventInput({ type: "lease.lost", pod: "pi-sandbox-4", requestId: "q3" }));
    bus.emit(eventInput({ type: "lease.expired", pod: "pi-sandbox-5" }));
    t = await text();
    expect(series(t, "pi_sandbox_queue_depth")).toBe(0);
    expect(series(t, "pi_sandbox_queue_tenants")).toBe(0);
    expect(series(t, "pi_sandbox_queue_depth_largest_tenant")).toBe(0);
    expect(series(t, "pi_sandbox_queue_timeouts_total")).toBe(1);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="timeout"}')).toBe(1);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_sum{outcome="timeout"}')).toBe(15);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="aborted"}')).toBe(1);
    expect(series(t, "pi_sandbox_leases_lost_total")).toBe(1);
    expect(series(t, "pi_sandbox_leases_expired_total")).toBe(1);
    expect(series(t, 'pi_sandbox_pool_pods{state="leased"}')).toBe(0);
    expect(series(t, 'pi_sandbox_pool_events_total{type="lease.conflict"}')).toBe(2);
  });

  it("with a snapshot source, pods by state and queue depth are read from it at each scrape", async () => {
    const bus = new EventBus("agent-t", "eu");
    const metrics = createMetrics();
    let snap = poolSnapshot({ podCount: 3 });
    const off = subscribeMetrics(bus, metrics, { snapshot: () => snap });
    // Another replica leased pod 1 and queued a caller: no event on this agent's bus.
    snap = {
      ...snap,
      pods: snap.pods.map((p, i) =>
        i === 1
          ? { ...p, state: "leased", holder: { agentId: "agent-other", requestId: "x", tenant: "t" } }
          : p,
      ),
      queue: { depth: 1, waiters: [{ requestId: "w", tenant: "t", waitedMs: 5 }] },
    };
    let t = await metrics.registry.metrics();
    expect(series(t, 'pi_sandbox_pool_pods{state="leased"}')).toBe(1);
    expect(series(t, 'pi_sandbox_pool_pods{state="ready"}')).toBe(2);
    expect(series(t, "pi_sandbox_queue_depth")).toBe(1);
    off();
    snap = poolSnapshot({ podCount: 5 });
    t = await metrics.registry.metrics();
    expect(series(t, 'pi_sandbox_pool_pods{state="ready"}')).toBe(2);
  });

  it("queue wait of waiters that gave up or were shut down; served ones count once", async () => {
    const { bus, text } = setup();
    bus.emit(eventInput({ type: "queue.entered", requestId: "a" }));
    bus.emit(eventInput({ type: "queue.entered", requestId: "b" }));
    bus.emit(eventInput({ type: "queue.entered", requestId: "c" }));
    bus.emit(eventInput({ type: "queue.left", requestId: "a", data: { reason: "shutdown", waitedMs: 100 } }));
    bus.emit(
      eventInput({
        type: "lease.acquired",
        pod: "pi-sandbox-0",
        requestId: "b",
        data: { acquireMs: 50, queueMs: 49 },
      }),
    );
    bus.emit(eventInput({ type: "queue.left", requestId: "b", data: { reason: "served", waitedMs: 49 } }));
    bus.emit(eventInput({ type: "queue.timeout", requestId: "c", data: { waitedMs: 15_000 } }));
    bus.emit(
      eventInput({ type: "queue.left", requestId: "c", data: { reason: "timeout", waitedMs: 15_000 } }),
    );
    const t = await text();
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="shutdown"}')).toBe(1);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="acquired"}')).toBe(1);
    expect(series(t, 'pi_sandbox_queue_wait_seconds_count{outcome="timeout"}')).toBe(1);
    expect(series(t, "pi_sandbox_queue_depth")).toBe(0);
  });

  it("pods no node has room for: a gauge, and the decision not to grow counted by its reason", async () => {
    const { bus, text } = setup();
    const scale = (reason: "unschedulable" | "demand", unschedulable: number, create: number) =>
      bus.emit(
        eventInput({
          type: "pool.scale",
          data: {
            reason,
            create,
            remove: 0,
            free: 2,
            held: 3,
            starting: 2,
            unschedulable,
            total: 7,
            wanted: 8,
            queued: 4,
            arrivalsPerSecond: 0,
          },
        }),
      );
    scale("unschedulable", 2, 0);
    let t = await text();
    expect(series(t, "pi_sandbox_pool_unschedulable_pods")).toBe(2);
    expect(series(t, 'pi_sandbox_pool_scale_decisions_total{reason="unschedulable"}')).toBe(1);
    scale("demand", 0, 3);
    t = await text();
    expect(series(t, "pi_sandbox_pool_unschedulable_pods")).toBe(0);
    expect(series(t, 'pi_sandbox_pool_scale_decisions_total{reason="demand"}')).toBe(1);
  });

  it("exec duration by result", async () => {
    const { bus, text } = setup();
    bus.emit(eventInput({ type: "exec.finished", requestId: "a", data: { exitCode: 0, durationMs: 20 } }));
    bus.emit(eventInput({ type: "exec.finished", requestId: "b", data: { exitCode: 1, durationMs: 30 } }));
    bus.emit(
      eventInput({
        type: "exec.finished",
        requestId: "c",
        data: { exitCode: null, timedOut: true, durationMs: 5000 },
      }),
    );
    bus.emit(eventInput({ type: "exec.finished", requestId: "d", data: { exitCode: null, durationMs: 7 } }));
    const t = await text();
    expect(series(t, 'pi_sandbox_exec_duration_seconds_count{result="ok"}')).toBe(1);
    expect(series(t, 'pi_sandbox_exec_duration_seconds_count{result="nonzero"}')).toBe(1);
    expect(series(t, 'pi_sandbox_exec_duration_seconds_count{result="timeout"}')).toBe(1);
    expect(series(t, 'pi_sandbox_exec_duration_seconds_count{result="killed"}')).toBe(1);
    expect(series(t, 'pi_sandbox_exec_duration_seconds_sum{result="timeout"}')).toBe(5);
  });

  it("tunnel gauge, unsubscribe, and the /metrics response", async () => {
    const { bus, metrics, off, text } = setup();
    metrics.setTunnelConnected(true);
    expect(series(await text(), "pi_sandbox_tunnel_connected")).toBe(1);
    off();
    bus.emit(eventInput({ type: "lease.conflict" }));
    expect(series(await text(), "pi_sandbox_lease_conflicts_total")).toBe(0);
    const plain = await metricsText(metrics);
    expect(plain.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(series(plain.body, "pi_sandbox_tunnel_connected")).toBe(1);
  });

  it("each agent's registry is its own; default labels and process metrics are opt-in", async () => {
    const a = createMetrics({ defaultLabels: { region: "eu" }, defaultMetrics: true });
    const b = createMetrics();
    a.leaseConflicts.inc();
    const ta = await a.registry.metrics();
    expect(series(ta, 'pi_sandbox_lease_conflicts_total{region="eu"}')).toBe(1);
    expect(ta).toContain("pi_sandbox_agent_process_cpu_seconds_total");
    const tb = await b.registry.metrics();
    expect(series(tb, "pi_sandbox_lease_conflicts_total")).toBe(0);
    expect(tb).not.toContain("process_cpu");
  });
});

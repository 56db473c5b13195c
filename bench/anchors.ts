/**
 * Published figures of the systems in docs/architecture.md §13, by row-name prefix. They were
 * measured on other machines and setups: a rough guide to the order of magnitude, not a race.
 */
const ANCHORS: Array<[prefix: string, text: string]> = [
  ["lease_put", "real apiserver Lease CAS ~0.8 ms p50 (loopback, keep-alive)"],
  [
    "acquire_release",
    "agent-sandbox warm claim p50 92 / p99 376 ms; sandbox-operator p50 48-54 / p99 72 ms serial",
  ],
  ["acquire_burst", "agent-sandbox burst ~57 ms/claim; sandbox-operator p50 316 ms at concurrency 20"],
  ["acquire_conflicts", "agent-sandbox: thousands of 409s under burst (optimistic-lock claims)"],
  ["exec_", "warm exec via vendor APIs: Daytona ~111 ms, E2B ~200 ms (vendor benchmark)"],
  ["edge_overhead", "Worker -> DO -> WebSocket -> back relay ~1 ms p50 (measured here, bare)"],
  ["e2e_exec", "first exec in a warm sandbox: Daytona ~111 ms, E2B ~200 ms (vendor benchmark)"],
  ["throughput/replace", "ordinary pod create -> Ready 0.8-0.9 s on a warm node"],
  ["throughput/scrub", "no published throughput figure among the anchors"],
  ["queue_wait", "agent-sandbox: ~1.4 s cold claim once the warm pool drains"],
  [
    "sandbox_create_first_exec",
    "create -> first exec: E2B p50 ~450 ms, Daytona p50 ~663 ms (vendor benchmark)",
  ],
  ["sandbox_exec_true", "warm exec in a sandbox: Daytona ~111 ms, E2B ~200 ms (vendor benchmark)"],
];

export function anchorFor(name: string): string | undefined {
  return ANCHORS.find(([prefix]) => name.startsWith(prefix))?.[1];
}

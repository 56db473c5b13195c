import { expect } from "vitest";
import type { HarnessMessage } from "./agent-process.ts";

/** One served acquisition as the agent harness reports it (test/support/agent-harness.ts). */
export interface Use {
  id: string;
  pod: string;
  fence: number;
  start: number;
  end: number;
  probe?: { exitCode: number | null; stdout: string; error?: string };
}

/**
 * The lease-safety invariant over served acquisitions, checked two independent ways: from inside
 * the pods (each holder's probe took a mkdir lock nobody else held and its marker was never
 * overwritten) and from the use windows (per pod, unique fences and windows that never overlap).
 */
export function expectExclusiveUses(served: readonly HarnessMessage[]): void {
  for (const r of served) {
    const probe = r.probe as Use["probe"];
    expect(probe?.error, `probe of ${r.id}`).toBeUndefined();
    expect(probe?.exitCode, `probe of ${r.id}: ${probe?.stdout}`).toBe(0);
    expect(probe?.stdout).toBe(`held:${r.id}`);
  }
  const byPod = new Map<string, Use[]>();
  for (const r of served) {
    const u = r as unknown as Use;
    byPod.set(u.pod, [...(byPod.get(u.pod) ?? []), u]);
  }
  for (const [pod, uses] of byPod) {
    uses.sort((a, b) => a.fence - b.fence);
    const fences = uses.map((u) => u.fence);
    expect(new Set(fences).size, `fences on ${pod}`).toBe(fences.length);
    for (let i = 1; i < uses.length; i++) {
      const prev = uses[i - 1] as Use;
      const cur = uses[i] as Use;
      expect(
        cur.start,
        `${pod}: ${cur.id} (fence ${cur.fence}) started before ${prev.id} (fence ${prev.fence}) ended`,
      ).toBeGreaterThanOrEqual(prev.end);
    }
  }
}

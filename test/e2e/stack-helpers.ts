import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSse as readSseBody, type SseMessage } from "../../shared/sse.ts";

export { agentUrlFromLog } from "../../devstack/agents.ts";
export { waitFor } from "../support/wait-for.ts";
export type { SseMessage };

// Small helpers shared by the cross-process suites against the whole local stack (devstack).

/**
 * Read an SSE response to its end (or until `onMessage` returns true), calling `onMessage` per event,
 * through the shared codec (`shared/sse.ts`). Comments (": ping") are skipped. Bounded by the
 * fetch's own signal.
 */
export async function readSse(res: Response, onMessage?: (m: SseMessage) => unknown): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  // Returning early ends the generator, which cancels the body (the server sees the reader leave).
  for await (const m of readSseBody(res.body!)) {
    out.push(m);
    if (onMessage?.(m) === true) break;
  }
  return out;
}

/** A fresh temporary directory and its removal. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, "content-type": "application/json", ...extra };
}

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor as poll } from "../support/wait-for.ts";

export { agentUrlFromLog } from "../../devstack/agents.ts";

// Small helpers shared by the cross-process suites against the whole local stack (devstack).

export interface SseMessage {
  event: string;
  data: string;
}

/**
 * Read an SSE response to its end (or until `onMessage` returns true), calling `onMessage` per event.
 * Comments (": ping") are skipped. Bounded by the fetch's own signal.
 */
export async function readSse(res: Response, onMessage?: (m: SseMessage) => unknown): Promise<SseMessage[]> {
  const out: SseMessage[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      let cut = buf.indexOf("\n\n");
      while (cut >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        cut = buf.indexOf("\n\n");
        const lines = block.split("\n");
        const event =
          lines
            .find((l) => l.startsWith("event:"))
            ?.slice(6)
            .trim() ?? "message";
        const dataLines = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
        if (dataLines.length === 0) continue;
        const m = { event, data: dataLines.join("\n") };
        out.push(m);
        if (onMessage?.(m) === true) {
          await reader.cancel().catch(() => {});
          return out;
        }
      }
      if (done) return out;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Poll `probe` until it returns a value other than undefined/false, or fail after `timeoutMs`. */
/** The agent's own URL, from the `agent started` line of its JSON log. */
/** Polls until `probe` returns something other than undefined/false (10 s unless told). */
export function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<T> {
  return poll(what, probe, timeoutMs, intervalMs);
}

/** A fresh temporary directory and its removal. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function bearer(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${token}`, "content-type": "application/json", ...extra };
}

/**
 * Runs a program to its end with stdout and stderr collected as one string (the order a terminal
 * shows them); killed after `timeoutMs` so a hang fails the test instead of stalling the suite.
 */
export function runProcess(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; timeoutMs: number },
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

import { createReadStream } from "node:fs";
import { open, stat } from "node:fs/promises";
import type { ServerResponse } from "node:http";

/** How often a followed log is checked for new bytes (the container appends to a file). */
const FOLLOW_POLL_MS = 200;
/** `tailLines` reads at most this much of the end of the file (the log is capped at 16 MiB anyway). */
const TAIL_WINDOW_BYTES = 16 * 1024 * 1024;

export interface LogOptions {
  /** Keep streaming what the container writes until it stops (`?follow=true`). */
  follow: boolean;
  /** Only the last N lines (`?tailLines=N`). */
  tailLines: number | undefined;
  /** Whether the container still runs: a followed log ends when it does not (as a real kubelet's). */
  running: () => boolean;
}

/** The kubelet's `/containerLogs` query: `follow`, `tailLines` (others are ignored). */
export function logOptions(q: URLSearchParams, running: () => boolean): LogOptions | string {
  const tail = q.get("tailLines");
  const tailLines = tail === null || tail === "" ? undefined : Number(tail);
  if (tailLines !== undefined && (!Number.isInteger(tailLines) || tailLines < 0))
    return `invalid tailLines: ${tail}`;
  return { follow: ["1", "true"].includes(q.get("follow") ?? ""), tailLines, running };
}

/**
 * Serves a container's log file as `text/plain`: from where `tailLines` says, then, with
 * `follow`, what is appended until the container stops or the client goes away.
 */
export async function serveContainerLog(
  res: ServerResponse,
  path: string,
  opts: LogOptions,
  notStarted: string,
): Promise<void> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    res
      .writeHead(missing ? 404 : 500, { "content-type": "text/plain" })
      .end(`${missing ? notStarted : (err as Error).message}\n`);
    return;
  }
  let offset = opts.tailLines === undefined ? 0 : await tailOffset(path, size, opts.tailLines);
  res.writeHead(200, { "content-type": "text/plain" });
  const copy = (end: number) =>
    new Promise<void>((resolve) => {
      if (end <= offset) return resolve();
      const file = createReadStream(path, { start: offset, end: end - 1 });
      file.on("error", () => resolve());
      file.on("end", resolve);
      file.pipe(res, { end: false });
      offset = end;
    });
  await copy(size);
  while (opts.follow && !res.destroyed) {
    const wasRunning = opts.running();
    const now = await stat(path).then(
      (s) => s.size,
      () => undefined,
    );
    if (now === undefined) break;
    // A truncated file (the container restarted its log) is read from its start again.
    if (now < offset) offset = 0;
    await copy(now);
    if (!wasRunning) break;
    await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
  }
  res.end();
}

/** Byte offset where the last `lines` lines of the file start. */
async function tailOffset(path: string, size: number, lines: number): Promise<number> {
  if (lines === 0) return size;
  const from = Math.max(0, size - TAIL_WINDOW_BYTES);
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(size - from);
    await fh.read(buf, 0, buf.length, from);
    // A final newline ends the last line; it does not start another.
    let i = buf.length - (buf[buf.length - 1] === 0x0a ? 1 : 0);
    for (let seen = 0; i > 0; i--) {
      if (buf[i - 1] === 0x0a && ++seen === lines) break;
    }
    return from + i;
  } finally {
    await fh.close();
  }
}

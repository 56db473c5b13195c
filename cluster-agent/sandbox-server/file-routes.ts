import type { IncomingMessage, ServerResponse } from "node:http";
import { type FileResult, readPath, removePath, writePath } from "./files.ts";
import { Gate } from "./gate.ts";
import { FILE_KIND_HEADER, MAX_BYTES_HEADER } from "./protocol.ts";
import { sendJson } from "./respond.ts";

/** Default and ceiling of one file write (the agent asks for less with `x-max-bytes`). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** One listing page: at most this many entries and this many bytes of JSON (the agent asks for less). */
const LIST_MAX_ENTRIES = 10_000;
const LIST_MAX_BYTES = 1024 * 1024;
/**
 * Reads (listings, and the stat before a file's stream) running at once; the rest wait their turn.
 * A listing holds its directory's entries while it builds a page, so this bounds the exec
 * server's memory under a tenant's concurrent listings (gate.ts has the numbers).
 */
const READS_AT_ONCE = 4;
const reads = new Gate(READS_AT_ONCE);

type Send = (res: ServerResponse, status: number, code: string, message: string) => void;

/**
 * `/files?path=P` — GET (bytes, or one JSON page of a directory's listing: `recursive=1`,
 * `limit=N`, `after=<next of the page before>`; `{entries, truncated, next?}`),
 * PUT (raw body, atomic), DELETE. The caller has already passed the token and fence checks.
 */
export async function handleFiles(
  req: IncomingMessage,
  res: ServerResponse,
  workspace: string,
  sendError: Send,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://sandbox");
  const path = url.searchParams.get("path") ?? "";
  const failed = (r: Extract<FileResult<unknown>, { ok: false }>) =>
    sendError(res, r.status, r.code, r.message);
  if (req.method === "PUT") {
    const asked = Number(req.headers[MAX_BYTES_HEADER] ?? MAX_FILE_BYTES);
    const max = Number.isInteger(asked) && asked >= 0 ? Math.min(asked, MAX_FILE_BYTES) : MAX_FILE_BYTES;
    const r = await writePath(workspace, path, req, max);
    if (!r.ok) return failed(r);
    return sendJson(res, 200, r.value);
  }
  req.resume();
  if (req.method === "DELETE") {
    const r = await removePath(workspace, path);
    if (!r.ok) return failed(r);
    res.writeHead(204).end();
    return;
  }
  if (req.method !== "GET")
    return sendError(res, 405, "invalid_request", `${req.method} not allowed on /files`);
  const limitRaw = Number(url.searchParams.get("limit") ?? LIST_MAX_ENTRIES);
  const limit =
    Number.isInteger(limitRaw) && limitRaw > 0 ? Math.min(limitRaw, LIST_MAX_ENTRIES) : LIST_MAX_ENTRIES;
  const after = url.searchParams.get("after") ?? undefined;
  if (after !== undefined && (after.length === 0 || after.length > 4096 || after.includes("\0")))
    return sendError(res, 400, "invalid_request", "after: empty, too long or has NUL");
  const r = await reads.run(() =>
    readPath(workspace, path, {
      recursive: url.searchParams.get("recursive") === "1",
      page: { maxEntries: limit, maxBytes: LIST_MAX_BYTES, after },
    }),
  );
  if (!r.ok) return failed(r);
  const v = r.value;
  if (v.kind === "dir") {
    res.setHeader(FILE_KIND_HEADER, "dir");
    const { kind: _k, ...page } = v;
    return sendJson(res, 200, page);
  }
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": v.size,
    [FILE_KIND_HEADER]: "file",
    "cache-control": "no-store",
  });
  v.stream.on("error", () => res.destroy());
  v.stream.pipe(res);
  res.on("close", () => v.stream.destroy());
}

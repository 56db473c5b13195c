import { z } from "zod";
import { ok } from "../../shared/errors.ts";
import type { ListedFile, ToolBackend, ToolResult } from "../../shared/tools/run-tool.ts";
import type { RouteClient } from "./route-client.ts";

// The files routes (issue 19) answer a directory with this body; a file with its raw bytes.
const DirectorySchema = z.object({
  entries: z.array(
    z.object({
      name: z.string(),
      type: z.enum(["file", "dir", "symlink"]),
      size: z.number().int().nonnegative(),
    }),
  ),
});

/** At most this many directory reads per recursive list_files (each is one counted route call). */
const MAX_DIRS_PER_LIST = 32;

const encodePath = (rel: string) => rel.split("/").map(encodeURIComponent).join("/");

/**
 * A ToolBackend over the edge's sandbox routes for one sandbox: `POST /v1/sandboxes/:id/exec`
 * and `GET/PUT /v1/sandboxes/:id/files/<path>`. With no sandbox, exec goes to `/v1/exec` (one
 * disposable pod); the file tools need a sandbox (the MCP server makes a one-shot one).
 */
export function routeBackend(client: RouteClient, sandboxId: string | undefined): ToolBackend {
  const base = sandboxId === undefined ? undefined : `/v1/sandboxes/${encodeURIComponent(sandboxId)}`;
  const noSandbox = (): ToolResult<never> => ({
    ok: false,
    error: { code: "invalid_request", message: "file tools need a sandbox" },
  });
  const filesPath = (rel: string) => `${base}/files/${encodePath(rel)}`;

  async function readDir(
    rel: string,
    signal: AbortSignal,
  ): Promise<ToolResult<z.infer<typeof DirectorySchema>>> {
    // A trailing slash names the directory itself (the workspace is "files/").
    const got = await client.json("GET", rel === "" ? `${base}/files/` : `${filesPath(rel)}/`, { signal });
    if (!got.ok) return got;
    const parsed = DirectorySchema.safeParse(got.value.body);
    if (!parsed.success)
      return {
        ok: false,
        error: { code: "invalid_request", message: `${rel || "/workspace"} is not a directory` },
      };
    return ok(parsed.data);
  }

  return {
    async exec(call, signal) {
      const ran = await client.exec(base ? `${base}/exec` : "/v1/exec", call, signal);
      return ran.ok ? ok(ran.value.outcome) : ran;
    },
    async read(rel, { maxBytes, signal }) {
      if (!base) return noSandbox();
      const got = await client.request("GET", filesPath(rel), { signal });
      if (!got.ok) return got;
      const res = got.value;
      if ((res.headers.get("Content-Type") ?? "").startsWith("application/json")) {
        // A directory listing, or a file whose bytes are JSON: decide by the shape.
        const bytes = new Uint8Array(await res.arrayBuffer());
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          // a file's bytes
        }
        if (DirectorySchema.safeParse(parsed).success) return ok({ kind: "dir" as const });
        return ok(
          bytes.length > maxBytes
            ? { kind: "file" as const, size: bytes.length }
            : { kind: "file" as const, size: bytes.length, bytes },
        );
      }
      const declared = Number(res.headers.get("Content-Length") ?? Number.NaN);
      if (Number.isFinite(declared) && declared > maxBytes) {
        await res.body?.cancel();
        return ok({ kind: "file" as const, size: declared });
      }
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length > maxBytes) return ok({ kind: "file" as const, size: bytes.length });
      return ok({ kind: "file" as const, size: bytes.length, bytes });
    },
    async write(rel, bytes, signal) {
      if (!base) return noSandbox();
      const got = await client.json("PUT", filesPath(rel), { bytes, signal });
      if (!got.ok) return got;
      const size = (got.value.body as { size?: unknown } | undefined)?.size;
      return ok({ size: typeof size === "number" ? size : bytes.length });
    },
    async list(rel, { recursive, limit, signal }) {
      if (!base) return noSandbox();
      const entries: ListedFile[] = [];
      const queue = [rel];
      let dirsRead = 0;
      let truncated = false;
      while (queue.length > 0) {
        if (dirsRead >= MAX_DIRS_PER_LIST || entries.length >= limit) {
          truncated = true;
          break;
        }
        const dir = queue.shift()!;
        const got = await readDir(dir, signal);
        dirsRead++;
        if (!got.ok) {
          if (dir === rel) return got;
          continue;
        }
        const prefix = dir === rel ? "" : `${dir.slice(rel === "" ? 0 : rel.length + 1)}/`;
        for (const e of got.value.entries) {
          if (entries.length >= limit) {
            truncated = true;
            break;
          }
          entries.push({ path: `${prefix}${e.name}`, type: e.type, size: e.size });
          if (recursive && e.type === "dir") queue.push(dir === "" ? e.name : `${dir}/${e.name}`);
        }
      }
      return ok({ entries, truncated });
    },
  };
}

import { z } from "zod";
import { ok } from "../../shared/errors.ts";
import type { ToolBackend, ToolResult } from "../../shared/tools/run-tool.ts";
import type { RouteClient } from "./route-client.ts";

// The files routes answer a directory with this body (recursive: names are relative paths); a file with its raw bytes.
const DirectorySchema = z.object({
  entries: z.array(
    z.object({
      name: z.string(),
      type: z.enum(["file", "dir", "symlink"]),
      size: z.number().int().nonnegative(),
    }),
  ),
  truncated: z.boolean().optional(),
});

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
    recursive: boolean,
    signal: AbortSignal,
  ): Promise<ToolResult<z.infer<typeof DirectorySchema>>> {
    const q = recursive ? "?recursive=1" : "";
    const got = await client.json("GET", `${rel === "" ? `${base}/files` : filesPath(rel)}${q}`, { signal });
    if (!got.ok) return got;
    const parsed = DirectorySchema.safeParse(got.value.body);
    if (!parsed.success) {
      return { ok: false, error: { code: "invalid_path", message: `/workspace/${rel}: not a directory` } };
    }
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
      const got = await readDir(rel, recursive, signal);
      if (!got.ok) return got;
      const entries = got.value.entries
        .slice(0, limit)
        .map((e) => ({ path: e.name, type: e.type, size: e.size }));
      return ok({ entries, truncated: got.value.truncated === true || got.value.entries.length > limit });
    },
  };
}

import { z } from "zod";
import {
  PortLinkSchema,
  ProcessInfoSchema,
  ProcessListSchema,
  ProcessOutputSchema,
  SandboxNetworkSchema,
  StdinResultSchema,
} from "../../shared/api.ts";
import { ok } from "../../shared/errors.ts";
import { type NetworkView, NO_NETWORK } from "../../shared/tools/network-tool.ts";
import type { PortLinkToolBackend } from "../../shared/tools/port-link-tools.ts";
import type { ProcessToolBackend } from "../../shared/tools/process-tools.ts";
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

/** A JSON answer parsed with `schema`; a body that does not fit is `internal` (the route broke its contract). */
async function routeJson<S extends z.ZodType>(
  client: RouteClient,
  method: "GET" | "POST",
  path: string,
  schema: S,
  opts: { json?: unknown; bytes?: Uint8Array; signal: AbortSignal },
): Promise<ToolResult<z.infer<S>>> {
  const got = await client.json(method, path, opts);
  if (!got.ok) return got;
  const parsed = schema.safeParse(got.value.body);
  if (parsed.success) return ok(parsed.data);
  return {
    ok: false,
    error: {
      code: "internal",
      message: `${method} ${path} answered an unexpected body`,
      requestId: got.value.requestId,
    },
  };
}

/**
 * The process tools' backend over the edge's routes for one sandbox (`/v1/sandboxes/:id/processes…`):
 * the caller's token goes with every call, so a sandbox of another tenant is `sandbox_not_found`
 * and a pid of another sandbox `process_not_found`, as for the same call made directly.
 */
export function routeProcessBackend(client: RouteClient, sandboxId: string): ProcessToolBackend {
  const base = `/v1/sandboxes/${encodeURIComponent(sandboxId)}/processes`;
  return {
    start: (body, signal) => routeJson(client, "POST", base, ProcessInfoSchema, { json: body, signal }),
    async list(signal) {
      const got = await routeJson(client, "GET", base, ProcessListSchema, { signal });
      return got.ok ? ok(got.value.processes) : got;
    },
    get: (pid, signal) => routeJson(client, "GET", `${base}/${pid}`, ProcessInfoSchema, { signal }),
    output: (pid, q, signal) =>
      routeJson(
        client,
        "GET",
        `${base}/${pid}/output?since=${q.since}&maxBytes=${q.maxBytes}&waitMs=${q.waitMs}`,
        ProcessOutputSchema,
        { signal },
      ),
    stdin: (pid, bytes, eof, signal) =>
      routeJson(client, "POST", `${base}/${pid}/stdin${eof ? "?eof=1" : ""}`, StdinResultSchema, {
        bytes,
        signal,
      }),
    signal: (pid, name, signal) =>
      routeJson(client, "POST", `${base}/${pid}/signal`, ProcessInfoSchema, {
        json: { signal: name },
        signal,
      }),
  };
}

/**
 * get_network over `GET /v1/sandboxes/:id/network`. Without a sandbox the call would run in a fresh
 * pod, which has no network. The route does not name a sandbox's secrets: `secrets` stays absent.
 */
export function routeNetworkReader(
  client: RouteClient,
  sandboxId: string | undefined,
): (signal: AbortSignal) => Promise<ToolResult<NetworkView>> {
  return async (signal) => {
    if (sandboxId === undefined) return ok({ allow: NO_NETWORK.allow, deny: NO_NETWORK.deny });
    const got = await client.json("GET", `/v1/sandboxes/${encodeURIComponent(sandboxId)}/network`, {
      signal,
    });
    if (!got.ok) return got;
    const parsed = SandboxNetworkSchema.safeParse(got.value.body);
    if (!parsed.success)
      return {
        ok: false,
        error: { code: "internal", message: "the network route answered an unexpected body" },
      };
    return ok(parsed.data);
  };
}

/** The port link tool's backend: `POST /v1/sandboxes/:id/ports/:port/links` with the caller's token. */
export function routePortLinkBackend(client: RouteClient, sandboxId: string): PortLinkToolBackend {
  const base = `/v1/sandboxes/${encodeURIComponent(sandboxId)}/ports`;
  return {
    open: (port, body, signal) =>
      routeJson(client, "POST", `${base}/${port}/links`, PortLinkSchema, { json: body, signal }),
  };
}

import { z } from "zod";
import { ChatHistoryMessageSchema, SessionIdSchema } from "../../shared/api.ts";
import { AppError, parseOrError } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { finishRelay } from "../http/relay-response.ts";
import { relayFrom } from "../relay/from-context.ts";
import { sandboxWhere } from "./sandboxes.ts";

export const SessionViewSchema = z.object({
  requestId: z.string(),
  sessionId: SessionIdSchema,
  createdAt: z.string(),
  updatedAt: z.string(),
  messages: z.array(ChatHistoryMessageSchema.extend({ at: z.string(), requestId: z.string() })),
});

const idParam = [{ name: "id", in: "path" as const, required: true, description: "session id" }];

function sessionId(c: AppContext): string {
  const id = parseOrError(SessionIdSchema, c.req.param("id"), "session id");
  if (!id.ok) throw id.error;
  return id.value;
}

/** GET /v1/sessions/:id — the caller's own session; another tenant's id is simply not found. */
export const getSessionRoute: RouteDef = {
  method: "GET",
  path: "/v1/sessions/:id",
  auth: "tenant",
  scope: "sandbox:chat",
  doc: {
    summary: "Read one of your chat sessions",
    tags: ["chat"],
    response: SessionViewSchema,
    parameters: idParam,
  },
  async handler(c) {
    const id = sessionId(c);
    const view = await c.get("deps").sessions.read(c.get("principal").tenant, id);
    if (!view) throw new AppError("not_found", "no such session");
    return c.json({ requestId: c.get("requestId"), ...view });
  },
};

export const deleteSessionRoute: RouteDef = {
  method: "DELETE",
  path: "/v1/sessions/:id",
  auth: "tenant",
  scope: "sandbox:chat",
  doc: {
    summary:
      'Delete one of your chat sessions, and its sandbox (`sandbox: "session"`): pod, workspace and Lease',
    tags: ["chat"],
    response: z.object({ requestId: z.string(), sessionId: SessionIdSchema, deleted: z.literal(true) }),
    parameters: idParam,
  },
  async handler(c) {
    const id = sessionId(c);
    const { sessions, config } = c.get("deps");
    const tenant = c.get("principal").tenant;
    const bound = await sessions.sandboxOf(tenant, id);
    const where = bound ? sandboxWhere(config.regions, bound) : null;
    if (bound && where) {
      // The sandbox first: if its cluster cannot be reached the session stays, so a retry can
      // still find the sandbox to delete (it idle-expires in any case). Already gone is fine.
      const out = await relayFrom(c, {
        method: "DELETE",
        path: `/v1/sandboxes/${encodeURIComponent(bound)}`,
        regions: [where.region],
        cluster: where.cluster,
      });
      if (!out.response.ok && out.response.status !== 404) return finishRelay(c, out);
      await out.response.body?.cancel();
    }
    const removed = await sessions.remove(tenant, id);
    if (!removed) throw new AppError("not_found", "no such session");
    return c.json({ requestId: c.get("requestId"), sessionId: id, deleted: true });
  },
};

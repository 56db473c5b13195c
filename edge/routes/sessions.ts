import { z } from "zod";
import { ChatHistoryMessageSchema, SessionIdSchema } from "../../shared/api.ts";
import { AppError, parseOrError } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";

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
    summary: "Delete one of your chat sessions",
    tags: ["chat"],
    response: z.object({ requestId: z.string(), sessionId: SessionIdSchema, deleted: z.literal(true) }),
    parameters: idParam,
  },
  async handler(c) {
    const id = sessionId(c);
    const removed = await c.get("deps").sessions.remove(c.get("principal").tenant, id);
    if (!removed) throw new AppError("not_found", "no such session");
    return c.json({ requestId: c.get("requestId"), sessionId: id, deleted: true });
  },
};

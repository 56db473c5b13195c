import { z } from "zod";
import type { RouteDef } from "../app-env.ts";

export const healthRoute: RouteDef = {
  method: "GET",
  path: "/healthz",
  auth: "none",
  doc: { summary: "Liveness of the edge", tags: ["meta"], response: z.object({ ok: z.literal(true) }) },
  handler: (c) => c.json({ ok: true }),
};

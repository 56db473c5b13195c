import type { RouteDef } from "../app-env.ts";
import { dashboardResponse } from "../dashboard/page.ts";

/** GET /dashboard — the live pool page; its data routes (/v1/pool, /v1/events) need sandbox:admin. */
export const dashboardRoute: RouteDef = {
  method: "GET",
  path: "/dashboard",
  auth: "none",
  doc: {
    summary: "Live dashboard page (HTML); its data needs a sandbox:admin token",
    tags: ["meta"],
    responseContentType: "text/html",
  },
  handler: () => dashboardResponse(),
};

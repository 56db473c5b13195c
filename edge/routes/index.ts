import type { RouteDef } from "../app-env.ts";
import { chatAliasRoute, chatRoute } from "./chat.ts";
import { dashboardRoute } from "./dashboard.ts";
import { eventsRoute } from "./events.ts";
import { execRoute } from "./exec.ts";
import { healthRoute } from "./health.ts";
import { poolRoute } from "./pool.ts";
import { PORT_LINK_ROUTES } from "./port-links.ts";
import { cancelRequestRoute } from "./requests.ts";
import { SANDBOX_ROUTES } from "./sandboxes.ts";
import { SECRET_ROUTES } from "./secrets.ts";
import { deleteSessionRoute, getSessionRoute } from "./sessions.ts";
import { tunnelRoute } from "./tunnel.ts";

/** Every public route, registered explicitly in this order (openapi.json is added by the app). */
export const ROUTES: readonly RouteDef[] = [
  healthRoute,
  execRoute,
  cancelRequestRoute,
  ...SANDBOX_ROUTES,
  ...SECRET_ROUTES,
  ...PORT_LINK_ROUTES,
  chatRoute,
  chatAliasRoute,
  getSessionRoute,
  deleteSessionRoute,
  poolRoute,
  eventsRoute,
  tunnelRoute,
  dashboardRoute,
];

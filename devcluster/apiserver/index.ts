export { startApiServer } from "./server.ts";
export type { ApiServer, ApiServerOptions, AuditEntry } from "./types.ts";

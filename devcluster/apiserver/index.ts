export { startApiServer } from "./server.ts";
export type { ApiServer, ApiServerOptions, AuditEntry, RequestLine } from "./types.ts";

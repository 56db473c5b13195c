import type { ServerResponse } from "node:http";
import type { ExecServerErrorBody, ExecServerErrorCode } from "./protocol.ts";

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export function sendError(
  res: ServerResponse,
  status: number,
  code: ExecServerErrorCode,
  message: string,
  extra: Omit<ExecServerErrorBody["error"], "code" | "message"> = {},
): void {
  const body: ExecServerErrorBody = { error: { code, message, ...extra } };
  sendJson(res, status, body);
}

import { AppError } from "../../shared/errors.ts";
import type { AppContext } from "../app-env.ts";

/** The buffered body as JSON: 415 unless it is declared JSON, 400 invalid_json if it is not. */
export function readJson(c: AppContext): unknown {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type)) {
    throw new AppError("unsupported_media_type", "send the body as Content-Type: application/json");
  }
  const body = c.get("body");
  try {
    return JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new AppError("invalid_json", "request body is not valid JSON");
  }
}

export function wantsEventStream(c: AppContext): boolean {
  return (c.req.header("Accept") ?? "").toLowerCase().includes("text/event-stream");
}

export const encodeJson = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

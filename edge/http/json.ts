import { AppError } from "../../shared/errors.ts";
import type { AppContext } from "../app-env.ts";

/**
 * curl's `-d` sends `application/x-www-form-urlencoded`; a JSON body under that type (or none) is
 * read as JSON so the README's plain `curl -d '{...}'` works. No CSRF opening: every route that reads
 * a body needs a bearer token in Authorization, which a cross-site form cannot send.
 */
const LENIENT_TYPES = /^(?:application\/x-www-form-urlencoded\b|$)/i;
const JSON_TYPES = /^application\/(?:[\w.+-]+\+)?json\b/i;

/** The buffered body as JSON: 415 for a type that is neither JSON nor curl's default, 400 invalid_json if it is not JSON. */
export function readJson(c: AppContext): unknown {
  const type = (c.req.header("Content-Type") ?? "").trim();
  if (!JSON_TYPES.test(type) && !LENIENT_TYPES.test(type)) {
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

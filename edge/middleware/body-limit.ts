import type { MiddlewareHandler } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";

/**
 * Buffer the body, refusing more than MAX_BODY_BYTES with 413: by Content-Length up front, and by
 * counting while reading (a chunked body has no length to trust).
 */
export function bodyLimit(kind: "request" | "file" = "request"): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const config = c.get("deps").config;
    const max = kind === "file" ? config.maxFileBytes : config.maxBodyBytes;
    const tooLarge = () => new AppError("payload_too_large", `request body is larger than ${max} bytes`);
    const declared = c.req.header("Content-Length");
    if (declared !== undefined && Number(declared) > max) throw tooLarge();
    const stream = c.req.raw.body;
    if (!stream) {
      c.set("body", new Uint8Array(0));
      return next();
    }
    const reader = stream.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel();
        throw tooLarge();
      }
      parts.push(value);
    }
    const body = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      body.set(p, at);
      at += p.byteLength;
    }
    c.set("body", body);
    await next();
  };
}

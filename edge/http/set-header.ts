import type { Context } from "hono";

/**
 * Set a header on the context's response. A response fetched from elsewhere (a relayed one) has
 * immutable headers: then it is copied once, body untouched, and the copy takes the header.
 */
export function setResponseHeader(c: Context, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    const res = c.res;
    c.res = undefined;
    c.res = new Response(res.body, { status: res.status, statusText: res.statusText, headers: res.headers });
    c.res.headers.set(name, value);
  }
}

/**
 * A streamed request body's signed trailer arrives with its end frame, after the request has been
 * handed to the app: the tunnel client attaches the promise of it to the Request it builds, and
 * the relay check (http/streamed-body.ts) awaits it once the body has passed. Keyed by the Request
 * object itself, so nothing a peer sends (no header) can supply or replace it.
 */
const trailers = new WeakMap<Request, Promise<string | null>>();

export function attachBodyTrailer(request: Request, trailer: Promise<string | null>): void {
  trailers.set(request, trailer);
}

/** The trailer of a request whose body streams through the tunnel; undefined for any other request. */
export function bodyTrailerOf(request: Request): Promise<string | null> | undefined {
  return trailers.get(request);
}

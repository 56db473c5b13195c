// errorResponse and toAppError live in shared/errors.ts (the agent uses them too).
/** A copy of `res` whose headers can be changed (fetch/DO responses have immutable headers). */
export function mutable(res: Response): Response {
  return new Response(res.body, {
    status: res.status,
    statusText: res.statusText,
    headers: new Headers(res.headers),
  });
}

import { errorFromEvent, SandboxApiError } from "./errors.ts";
import { readSse } from "./sse.ts";
import { asApiError, type RequestSpec, type Transport } from "./transport.ts";
import type { ErrorBody } from "./types.ts";

/**
 * The typed events of an SSE route. An `error` event is thrown as SandboxApiError; a stream that
 * ends before its terminal event (`result`, `done`) throws `invalid_response` instead of ending
 * quietly, so a dropped connection is never mistaken for success.
 */
export async function* typedEvents<E extends { type: string }>(
  transport: Transport,
  spec: RequestSpec,
  terminal: E["type"],
): AsyncGenerator<Exclude<E, { type: "error" }>> {
  const { res, signal, done } = await transport.open({ ...spec, accept: "text/event-stream" });
  const requestId = res.headers.get("x-request-id") ?? undefined;
  try {
    if (!res.body || !(res.headers.get("content-type") ?? "").includes("text/event-stream")) {
      throw new SandboxApiError({
        code: "invalid_response",
        message: `expected an event stream, got ${res.headers.get("content-type") ?? "no body"}`,
        status: res.status,
        requestId,
      });
    }
    for await (const m of readSse(res.body)) {
      let event: E;
      try {
        event = JSON.parse(m.data) as E;
      } catch (e) {
        throw new SandboxApiError({
          code: "invalid_response",
          message: `an event that is not JSON: ${m.data.slice(0, 100)}`,
          status: res.status,
          requestId,
          cause: e,
        });
      }
      if (event.type === "error")
        throw errorFromEvent((event as unknown as { error: ErrorBody }).error, res.status);
      yield event as Exclude<E, { type: "error" }>;
      if (event.type === terminal) return;
    }
    throw new SandboxApiError({
      code: "invalid_response",
      message: `the stream ended before its ${terminal} event`,
      status: res.status,
      requestId,
    });
  } catch (e) {
    throw asApiError(e, signal);
  } finally {
    done();
  }
}

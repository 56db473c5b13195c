import type {
  ConfigurationOptions,
  ObservableMiddleware,
  RequestContext,
  ResponseContext,
} from "@kubernetes/client-node";
import { Observable } from "@kubernetes/client-node";

/**
 * Per-call deadline for a client-node 2.x API call: the request's own fetch is aborted after `ms`,
 * so a timed-out call is really over (with a Promise.race the CAS could still land later and be
 * found only at TTL). Pass as the call's second argument: `api.readNamespacedLease(p, deadline(ms))`.
 */
export function deadline(ms: number): ConfigurationOptions {
  return { middleware: [abortAfter(ms)], middlewareMergeStrategy: "append" };
}

export function abortAfter(ms: number): ObservableMiddleware {
  return {
    pre(ctx: RequestContext): Observable<RequestContext> {
      // A fresh signal per request: a retry or a second call gets its own full budget.
      // AbortSignal.timeout takes whole milliseconds only (a budget such as TTL/3 is not one).
      ctx.setSignal(AbortSignal.timeout(Math.max(1, Math.ceil(ms))));
      return new Observable(Promise.resolve(ctx));
    },
    post(res: ResponseContext): Observable<ResponseContext> {
      return new Observable(Promise.resolve(res));
    },
  };
}

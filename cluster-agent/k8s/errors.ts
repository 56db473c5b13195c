import { ApiException } from "@kubernetes/client-node";

export interface K8sFailure {
  /** HTTP status, or 0 when the request never got an answer (network, timeout). */
  code: number;
  /** The Status `reason` (Conflict, AlreadyExists, NotFound, ...) when the server sent one. */
  reason: string | undefined;
  message: string;
}

/** ApiException bodies are raw JSON strings for error statuses; this reads code and reason from any thrown value. */
export function k8sFailure(e: unknown): K8sFailure {
  if (e instanceof ApiException) {
    const code = typeof e.code === "number" ? e.code : 0;
    let reason: string | undefined;
    let message = e.message;
    const body: unknown = e.body;
    let parsed: unknown = body;
    if (typeof body === "string") {
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
    }
    if (parsed && typeof parsed === "object") {
      const p = parsed as { reason?: unknown; message?: unknown };
      if (typeof p.reason === "string") reason = p.reason;
      if (typeof p.message === "string") message = p.message;
    }
    return { code, reason, message };
  }
  return { code: 0, reason: undefined, message: e instanceof Error ? e.message : String(e) };
}

export const isConflict = (f: K8sFailure) => f.code === 409;
export const isNotFound = (f: K8sFailure) => f.code === 404;

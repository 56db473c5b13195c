import type { JsonObject } from "./types.ts";

/** Identifies the object an error is about, as in a Status' `details`. */
export interface Target {
  name: string;
  group: string;
  /** The resource name (`leases`) for NotFound/Conflict/AlreadyExists, as the real apiserver does. */
  kind: string;
}

export interface Cause {
  reason: string;
  message: string;
  field: string;
}

/** An error the server answers with: an HTTP code plus a Kubernetes `Status` body. */
export class StatusError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: JsonObject | undefined;
  constructor(code: number, reason: string, message: string, details?: JsonObject) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.details = details;
  }
  toStatus(): JsonObject {
    const s: JsonObject = {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
    };
    if (this.details !== undefined) s.details = this.details;
    s.code = this.code;
    return s;
  }
}

export function statusOf(e: StatusError): JsonObject {
  return e.toStatus();
}

/** `leases.coordination.k8s.io` or `pods`: how the real server names a resource in messages. */
export function qualified(resource: string, group: string): string {
  return group === "" ? resource : `${resource}.${group}`;
}

function targetDetails(t: Target): JsonObject {
  const d: JsonObject = { name: t.name };
  if (t.group !== "") d.group = t.group;
  d.kind = t.kind;
  return d;
}

export function notFound(t: Target): StatusError {
  return new StatusError(
    404,
    "NotFound",
    `${qualified(t.kind, t.group)} "${t.name}" not found`,
    targetDetails(t),
  );
}

export function alreadyExists(t: Target): StatusError {
  return new StatusError(
    409,
    "AlreadyExists",
    `${qualified(t.kind, t.group)} "${t.name}" already exists`,
    targetDetails(t),
  );
}

export function conflict(t: Target, why: string): StatusError {
  return new StatusError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(t.kind, t.group)} "${t.name}": ${why}`,
    targetDetails(t),
  );
}

export const MODIFIED_MESSAGE =
  "the object has been modified; please apply your changes to the latest version and try again";

export function badRequest(message: string): StatusError {
  return new StatusError(400, "BadRequest", message);
}

export function unauthorized(): StatusError {
  return new StatusError(401, "Unauthorized", "Unauthorized");
}

export function pathNotFound(): StatusError {
  return new StatusError(404, "NotFound", "the server could not find the requested resource", {});
}

export function methodNotAllowed(t: { kind: string; group: string }): StatusError {
  return new StatusError(
    405,
    "MethodNotAllowed",
    `the server does not allow this method on the requested resource`,
    { group: t.group, kind: t.kind },
  );
}

export function unsupportedMediaType(accepted: string[]): StatusError {
  return new StatusError(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}`,
  );
}

export function tooLarge(): StatusError {
  return new StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728");
}

export function expired(message: string): StatusError {
  return new StatusError(410, "Expired", message);
}

export function internal(message: string): StatusError {
  return new StatusError(500, "InternalError", `Internal error occurred: ${message}`, {
    causes: [{ message }],
  });
}

/**
 * 422 Invalid. `kind` is the GroupKind the real server prints (`Lease.coordination.k8s.io`, `Pod`),
 * except for the missing-resourceVersion case where the real server prints the resource.
 */
export function invalid(kind: string, group: string, name: string, causes: Cause[]): StatusError {
  const qualifiedKind = group === "" ? kind : `${kind}.${group}`;
  const parts = causes.map((c) => `${c.field}: ${c.message}`);
  const summary = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  const details: JsonObject = {};
  if (name !== "") details.name = name;
  if (group !== "") details.group = group;
  if (kind !== "") details.kind = kind;
  details.causes = causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field }));
  return new StatusError(422, "Invalid", `${qualifiedKind} "${name}" is invalid: ${summary}`, details);
}

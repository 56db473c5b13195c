import { parseJson } from "./body.ts";
import { bytesOf, fields, PROTOBUF, stringOf, unwrapUnknown } from "./protobuf.ts";
import { badRequest, type StatusError } from "./status.ts";
import { isObject, type JsonObject } from "./types.ts";

export const ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
export const RULES_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";

const NO_RBAC = "devcluster authorizes every authenticated request (no RBAC); a real cluster checks the Role";

type Review = { ok: true; body: JsonObject } | { ok: false; error: StatusError };

/** A review body as JSON or as the protobuf kubectl sends; a StatusError when it is neither or not `kind`. */
function decodeReview(
  raw: Buffer,
  contentType: string,
  kind: string,
  fromProtobuf: (raw: Buffer) => JsonObject | undefined,
): { ok: true; review: JsonObject } | { ok: false; error: StatusError } {
  let review: unknown;
  if (contentType.startsWith(PROTOBUF)) {
    review = fromProtobuf(raw);
    if (review === undefined)
      return { ok: false, error: badRequest("the body is not a protobuf-encoded object") };
  } else {
    const parsed = parseJson(raw);
    if (!parsed.ok) return { ok: false, error: badRequest(parsed.message) };
    review = parsed.value;
  }
  if (!isObject(review) || review.kind !== kind)
    return { ok: false, error: badRequest(`the body is not a ${kind}`) };
  return { ok: true, review };
}

/**
 * `POST …/selfsubjectaccessreviews` (`kubectl auth can-i`): the review echoed with its answer.
 * devcluster authorizes every authenticated request (no RBAC; the audit hook records what a real
 * cluster would check), so the answer is "allowed", with that reason — true here, and the reason
 * says it would not be on a real cluster.
 */
export function selfSubjectAccessReview(raw: Buffer, contentType: string): Review {
  const decoded = decodeReview(raw, contentType, "SelfSubjectAccessReview", accessReviewFromProtobuf);
  if (!decoded.ok) return decoded;
  const spec = isObject(decoded.review.spec) ? decoded.review.spec : {};
  const attributes = [spec.resourceAttributes, spec.nonResourceAttributes].filter(isObject);
  if (attributes.length !== 1)
    return {
      ok: false,
      error: badRequest("exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set"),
    };
  return answered("SelfSubjectAccessReview", spec, { allowed: true, reason: NO_RBAC });
}

/**
 * `POST …/selfsubjectrulesreviews` (`kubectl auth can-i --list`): what the caller may do in
 * `spec.namespace` — everything, on devcluster (see selfSubjectAccessReview), which the rules say
 * as a cluster-admin's do (`*` verbs on `*.*`, and every non-resource URL).
 */
export function selfSubjectRulesReview(raw: Buffer, contentType: string): Review {
  const decoded = decodeReview(raw, contentType, "SelfSubjectRulesReview", rulesReviewFromProtobuf);
  if (!decoded.ok) return decoded;
  const spec = isObject(decoded.review.spec) ? decoded.review.spec : {};
  return answered("SelfSubjectRulesReview", spec, {
    resourceRules: [{ verbs: ["*"], apiGroups: ["*"], resources: ["*"] }],
    nonResourceRules: [{ verbs: ["*"], nonResourceURLs: ["*"] }],
    incomplete: false,
    evaluationError: NO_RBAC,
  });
}

/** A review as the server returns it: the caller's spec echoed, with the answer as its status. */
function answered(kind: string, spec: JsonObject, status: JsonObject): Review {
  return {
    ok: true,
    body: {
      kind,
      apiVersion: "authorization.k8s.io/v1",
      metadata: { creationTimestamp: null },
      spec,
      status,
    },
  };
}

const RESOURCE_ATTRIBUTES = ["namespace", "verb", "group", "version", "resource", "subresource", "name"];
const NON_RESOURCE_ATTRIBUTES = ["path", "verb"];

/**
 * kubectl sends built-in kinds as protobuf (`kubectl auth can-i` does). Just enough of it for a
 * SelfSubjectAccessReview: runtime.Unknown{typeMeta=1{kind=2}, raw=2} → review{spec=2{
 * resourceAttributes=1{namespace=1 … name=7}, nonResourceAttributes=2{path=1, verb=2}}}. Field
 * and label selectors (8, 9) are skipped. Undefined when the bytes are not that shape.
 */
function accessReviewFromProtobuf(buf: Buffer): JsonObject | undefined {
  const u = unwrapUnknown(buf);
  if (!u) return undefined;
  const specFields = fields(bytesOf(fields(u.raw), 2) ?? Buffer.alloc(0));
  if (!specFields) return undefined;
  const strings = (b: Buffer | undefined, names: string[]): JsonObject | undefined => {
    const f = b ? fields(b) : undefined;
    if (!f) return undefined;
    const out: JsonObject = {};
    names.forEach((name, i) => {
      const v = stringOf(f, i + 1);
      if (v !== "") out[name] = v; // omitempty, as the server echoes it
    });
    return out;
  };
  const resourceAttributes = strings(bytesOf(specFields, 1), RESOURCE_ATTRIBUTES);
  const nonResourceAttributes = strings(bytesOf(specFields, 2), NON_RESOURCE_ATTRIBUTES);
  return {
    kind: u.kind,
    spec: {
      ...(resourceAttributes ? { resourceAttributes } : {}),
      ...(nonResourceAttributes ? { nonResourceAttributes } : {}),
    },
  };
}

/** A SelfSubjectRulesReview: review{spec=2{namespace=1}}. */
function rulesReviewFromProtobuf(buf: Buffer): JsonObject | undefined {
  const u = unwrapUnknown(buf);
  if (!u) return undefined;
  const spec = fields(bytesOf(fields(u.raw), 2) ?? Buffer.alloc(0));
  if (!spec) return undefined;
  const namespace = stringOf(spec, 1);
  return { kind: u.kind, spec: namespace === "" ? {} : { namespace } };
}

import { parseJson } from "./body.ts";
import { badRequest, type StatusError } from "./status.ts";
import { isObject, type JsonObject } from "./types.ts";

export const ACCESS_REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/**
 * `POST …/selfsubjectaccessreviews` (`kubectl auth can-i`): the review echoed with its answer.
 * devcluster authorizes every authenticated request (no RBAC; the audit hook records what a real
 * cluster would check), so the answer is "allowed", with that reason — true here, and the reason
 * says it would not be on a real cluster.
 */
export function selfSubjectAccessReview(
  raw: Buffer,
  contentType: string,
): { ok: true; body: JsonObject } | { ok: false; error: StatusError } {
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
  if (!isObject(review) || review.kind !== "SelfSubjectAccessReview")
    return { ok: false, error: badRequest("the body is not a SelfSubjectAccessReview") };
  const spec = isObject(review.spec) ? review.spec : {};
  const attributes = [spec.resourceAttributes, spec.nonResourceAttributes].filter(isObject);
  if (attributes.length !== 1)
    return {
      ok: false,
      error: badRequest("exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set"),
    };
  return {
    ok: true,
    body: {
      kind: "SelfSubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: { creationTimestamp: null },
      spec,
      status: {
        allowed: true,
        reason: "devcluster authorizes every authenticated request (no RBAC); a real cluster checks the Role",
      },
    },
  };
}

const PROTOBUF = "application/vnd.kubernetes.protobuf";
/** "k8s\0": the prefix of every protobuf-encoded object (a runtime.Unknown follows). */
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);
const RESOURCE_ATTRIBUTES = ["namespace", "verb", "group", "version", "resource", "subresource", "name"];
const NON_RESOURCE_ATTRIBUTES = ["path", "verb"];

/**
 * kubectl sends built-in kinds as protobuf (`kubectl auth can-i` does). Just enough of it for a
 * SelfSubjectAccessReview: runtime.Unknown{typeMeta=1{kind=2}, raw=2} → review{spec=2{
 * resourceAttributes=1{namespace=1 … name=7}, nonResourceAttributes=2{path=1, verb=2}}}. Field
 * and label selectors (8, 9) are skipped. Undefined when the bytes are not that shape.
 */
function fromProtobuf(buf: Buffer): JsonObject | undefined {
  if (!buf.subarray(0, 4).equals(MAGIC)) return undefined;
  const unknown = fields(buf.subarray(4));
  const typeMeta = unknown?.get(1)?.[0];
  const raw = unknown?.get(2)?.[0];
  if (!typeMeta || !raw) return undefined;
  const kind = fields(typeMeta)?.get(2)?.[0]?.toString("utf8");
  const spec = fields(raw)?.get(2)?.[0];
  const specFields = spec ? fields(spec) : new Map<number, Buffer[]>();
  if (!specFields) return undefined;
  const strings = (b: Buffer | undefined, names: string[]): JsonObject | undefined => {
    const f = b ? fields(b) : undefined;
    if (!f) return undefined;
    const out: JsonObject = {};
    names.forEach((name, i) => {
      const v = f.get(i + 1)?.[0];
      if (v !== undefined && v.length > 0) out[name] = v.toString("utf8"); // omitempty, as the server echoes it
    });
    return out;
  };
  const resourceAttributes = strings(specFields.get(1)?.[0], RESOURCE_ATTRIBUTES);
  const nonResourceAttributes = strings(specFields.get(2)?.[0], NON_RESOURCE_ATTRIBUTES);
  return {
    kind: kind ?? "",
    spec: {
      ...(resourceAttributes ? { resourceAttributes } : {}),
      ...(nonResourceAttributes ? { nonResourceAttributes } : {}),
    },
  };
}

/** The length-delimited fields of one protobuf message by number (others skipped); undefined if malformed. */
function fields(buf: Buffer): Map<number, Buffer[]> | undefined {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = buf[i++];
      if (b === undefined) return undefined;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    return undefined;
  };
  while (i < buf.length) {
    const key = varint();
    if (key === undefined) return undefined;
    const wire = key % 8;
    const field = Math.floor(key / 8);
    if (wire === 0) {
      if (varint() === undefined) return undefined;
    } else if (wire === 1 || wire === 5) {
      i += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      const len = varint();
      if (len === undefined || i + len > buf.length) return undefined;
      out.set(field, [...(out.get(field) ?? []), buf.subarray(i, i + len)]);
      i += len;
    } else return undefined;
  }
  return i === buf.length ? out : undefined;
}

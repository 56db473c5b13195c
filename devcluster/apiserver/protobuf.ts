import type { JsonObject } from "./types.ts";

/**
 * The Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) as far as devcluster
 * reads it: "k8s\0" + runtime.Unknown{typeMeta=1{apiVersion=1, kind=2}, raw=2}, where raw is the
 * object in the field numbers of k8s.io/api's generated.proto. kubectl's typed commands send it
 * (`auth can-i`, `create namespace`, `create secret`); everything else arrives as JSON.
 */
export const PROTOBUF = "application/vnd.kubernetes.protobuf";
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** One message's fields by number: length-delimited ones as bytes, varints as numbers. */
export type Fields = Map<number, Array<Buffer | number>>;

/** The fields of one protobuf message (fixed-width ones skipped); undefined if malformed. */
export function fields(buf: Buffer): Fields | undefined {
  const out: Fields = new Map();
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      const b = buf[i++];
      if (b === undefined) return undefined;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    return undefined;
  };
  const add = (field: number, v: Buffer | number) => out.set(field, [...(out.get(field) ?? []), v]);
  while (i < buf.length) {
    const key = varint();
    if (key === undefined) return undefined;
    const wire = key % 8;
    const field = Math.floor(key / 8);
    if (wire === 0) {
      const v = varint();
      if (v === undefined) return undefined;
      add(field, v);
    } else if (wire === 1 || wire === 5) {
      i += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      const len = varint();
      if (len === undefined || i + len > buf.length) return undefined;
      add(field, buf.subarray(i, i + len));
      i += len;
    } else return undefined;
  }
  return i === buf.length ? out : undefined;
}

/** The first length-delimited value of a field. */
export function bytesOf(f: Fields | undefined, field: number): Buffer | undefined {
  const v = f?.get(field)?.find((x) => typeof x !== "number");
  return typeof v === "number" ? undefined : v;
}

/** A string field; "" when absent (proto3 omits empty strings). */
export function stringOf(f: Fields | undefined, field: number): string {
  return bytesOf(f, field)?.toString("utf8") ?? "";
}

/** The envelope: the kind it names and the object's bytes; undefined when the bytes are not one. */
export function unwrapUnknown(buf: Buffer): { apiVersion: string; kind: string; raw: Buffer } | undefined {
  if (!buf.subarray(0, 4).equals(MAGIC)) return undefined;
  const unknown = fields(buf.subarray(4));
  const typeMeta = fields(bytesOf(unknown, 1) ?? Buffer.alloc(0));
  const raw = bytesOf(unknown, 2);
  if (!typeMeta || !raw) return undefined;
  return { apiVersion: stringOf(typeMeta, 1), kind: stringOf(typeMeta, 2), raw };
}

/** map<string, string|bytes> fields: repeated entries {key=1, value=2}. */
function mapOf(f: Fields | undefined, field: number, value: (b: Buffer) => string): JsonObject | undefined {
  const entries = (f?.get(field) ?? []).filter((x): x is Buffer => typeof x !== "number");
  if (entries.length === 0) return undefined;
  const out: JsonObject = {};
  for (const e of entries) {
    const kv = fields(e);
    out[stringOf(kv, 1)] = value(bytesOf(kv, 2) ?? Buffer.alloc(0));
  }
  return out;
}

const utf8 = (b: Buffer) => b.toString("utf8");

/** ObjectMeta: what a create may set (name=1, generateName=2, namespace=3, labels=11, annotations=12). */
function objectMeta(b: Buffer | undefined): JsonObject | undefined {
  const f = fields(b ?? Buffer.alloc(0));
  if (!f) return undefined;
  const meta: JsonObject = {};
  for (const [key, n] of [
    ["name", 1],
    ["generateName", 2],
    ["namespace", 3],
  ] as const) {
    const v = stringOf(f, n);
    if (v !== "") meta[key] = v;
  }
  const labels = mapOf(f, 11, utf8);
  if (labels) meta.labels = labels;
  const annotations = mapOf(f, 12, utf8);
  if (annotations) meta.annotations = annotations;
  return meta;
}

/**
 * The kinds devcluster decodes from protobuf, to the JSON a client would have sent: Namespace
 * (metadata=1, spec=2{finalizers=1}) and Secret (metadata=1, data=2 map<string,bytes>, type=3,
 * stringData=4, immutable=5). Undefined for other kinds or malformed bytes.
 */
export function objectFromProtobuf(buf: Buffer): JsonObject | undefined {
  const u = unwrapUnknown(buf);
  const f = u ? fields(u.raw) : undefined;
  if (!u || !f) return undefined;
  const metadata = objectMeta(bytesOf(f, 1));
  if (!metadata) return undefined;
  const obj: JsonObject = { apiVersion: u.apiVersion || "v1", kind: u.kind, metadata };
  if (u.kind === "Namespace") {
    const finalizers = (fields(bytesOf(f, 2) ?? Buffer.alloc(0))?.get(1) ?? []).filter(
      (x): x is Buffer => typeof x !== "number",
    );
    if (finalizers.length > 0) obj.spec = { finalizers: finalizers.map(utf8) };
    return obj;
  }
  if (u.kind === "Secret") {
    const data = mapOf(f, 2, (b) => b.toString("base64"));
    if (data) obj.data = data;
    const type = stringOf(f, 3);
    if (type !== "") obj.type = type;
    const stringData = mapOf(f, 4, utf8);
    if (stringData) obj.stringData = stringData;
    const immutable = f.get(5)?.[0];
    if (typeof immutable === "number") obj.immutable = immutable !== 0;
    return obj;
  }
  return undefined;
}

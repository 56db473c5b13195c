import { definitionsV2, patchPathsV2 } from "./openapi.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/**
 * `/openapi/v2`: the kinds' definitions as Swagger 2.0, in JSON or — what kubectl asks for
 * (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) — as gnostic's `openapi.v2.Document`
 * protobuf. kubectl before 1.27 validates manifests against it client-side (unknown fields, types)
 * and finds each kind by `x-kubernetes-group-version-kind`; kubectl 1.25–1.26 find `fieldValidation`
 * on each kind's PATCH path. Only PATCH paths are listed (what kubectl reads).
 */

export const OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/** What kube-apiserver answers with: Go's mime parser rejects the `@` of the requested type. */
export const OPENAPI_V2_PROTOBUF_RESPONSE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

let json: JsonObject | undefined;
let protobuf: Buffer | undefined;

export function openApiV2Json(): JsonObject {
  json ??= {
    swagger: "2.0",
    info: { title: "Kubernetes", version: "v1.26.0-devcluster" },
    paths: patchPathsV2(),
    definitions: definitionsV2(),
  };
  return json;
}

export function openApiV2Protobuf(): Buffer {
  protobuf ??= encodeDocument(openApiV2Json());
  return protobuf;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

/** One length-delimited field (every field written here is a string or a message). */
function field(n: number, body: Buffer | string): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  return Buffer.concat([varint((n << 3) | 2), varint(b.length), b]);
}

function str(v: Json | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** NamedAny{name, Any{yaml}}: JSON is YAML, which is how kube-openapi reads vendor extensions. */
function namedAny(name: string, value: Json): Buffer {
  return Buffer.concat([field(1, name), field(2, field(2, JSON.stringify(value)))]);
}

/** openapi.v2.Schema: $ref 1, format 2, description 4, required 19, additionalProperties 21, type 22, items 23, properties 25, vendor_extension 31. */
function encodeSchema(s: JsonObject): Buffer {
  const parts: Buffer[] = [];
  const ref = str(s.$ref);
  if (ref) parts.push(field(1, ref));
  const format = str(s.format);
  if (format) parts.push(field(2, format));
  const description = str(s.description);
  if (description) parts.push(field(4, description));
  if (Array.isArray(s.required))
    for (const r of s.required) if (typeof r === "string") parts.push(field(19, r));
  if (isObject(s.additionalProperties)) parts.push(field(21, field(1, encodeSchema(s.additionalProperties))));
  const type = str(s.type);
  if (type) parts.push(field(22, field(1, type)));
  if (isObject(s.items)) parts.push(field(23, field(1, encodeSchema(s.items))));
  if (isObject(s.properties)) {
    const named = Object.entries(s.properties)
      .filter((e): e is [string, JsonObject] => isObject(e[1]))
      .map(([name, sub]) => field(1, Buffer.concat([field(1, name), field(2, encodeSchema(sub))])));
    parts.push(field(25, Buffer.concat(named)));
  }
  for (const [k, v] of Object.entries(s)) if (k.startsWith("x-")) parts.push(field(31, namedAny(k, v)));
  return Buffer.concat(parts);
}

/** NonBodyParameter (query 3 / path 4 sub-schema: in 2, name 4, type 5 or 6) inside Parameter 2 inside ParametersItem 1. */
function encodeParameter(p: JsonObject): Buffer {
  const query = p.in === "query";
  const sub = Buffer.concat([
    field(2, str(p.in) ?? ""),
    field(4, str(p.name) ?? ""),
    field(query ? 6 : 5, str(p.type) ?? "string"),
  ]);
  return field(1, field(2, field(query ? 3 : 4, sub)));
}

/** Operation: operation_id 5, parameters 8, responses 9 (NamedResponseValue → Response{description}), vendor_extension 13. */
function encodeOperation(op: JsonObject): Buffer {
  const parts: Buffer[] = [field(5, str(op.operationId) ?? "")];
  if (Array.isArray(op.parameters))
    for (const p of op.parameters) if (isObject(p)) parts.push(field(8, encodeParameter(p)));
  const responses = isObject(op.responses) ? op.responses : {};
  const codes = Object.entries(responses).map(([code, r]) =>
    field(
      1,
      Buffer.concat([
        field(1, code),
        field(2, field(1, field(1, str(isObject(r) ? r.description : undefined) ?? ""))),
      ]),
    ),
  );
  parts.push(field(9, Buffer.concat(codes)));
  for (const [k, v] of Object.entries(op)) if (k.startsWith("x-")) parts.push(field(13, namedAny(k, v)));
  return Buffer.concat(parts);
}

/** Paths{path 2: NamedPathItem{name 1, PathItem{patch 8}}}. */
function encodePaths(paths: JsonObject): Buffer {
  const items = Object.entries(paths).map(([name, item]) => {
    const patch =
      isObject(item) && isObject(item.patch) ? field(8, encodeOperation(item.patch)) : Buffer.alloc(0);
    return field(2, Buffer.concat([field(1, name), field(2, patch)]));
  });
  return Buffer.concat(items);
}

/** openapi.v2.Document: swagger 1, info 2 (title 1, version 2), paths 8, definitions 9. */
function encodeDocument(doc: JsonObject): Buffer {
  const info = isObject(doc.info) ? doc.info : {};
  const defs = isObject(doc.definitions) ? doc.definitions : {};
  const named = Object.entries(defs)
    .filter((e): e is [string, JsonObject] => isObject(e[1]))
    .map(([name, s]) => field(1, Buffer.concat([field(1, name), field(2, encodeSchema(s))])));
  return Buffer.concat([
    field(1, "2.0"),
    field(2, Buffer.concat([field(1, str(info.title) ?? ""), field(2, str(info.version) ?? "")])),
    field(8, encodePaths(isObject(doc.paths) ? doc.paths : {})),
    field(9, Buffer.concat(named)),
  ]);
}

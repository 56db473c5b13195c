import type { IncomingMessage } from "node:http";
import { decodeInto } from "./decode.ts";
import { goJsonSyntaxError, summarizeData } from "./gojson.ts";
import type { Kind } from "./kinds/kind.ts";
import { groupVersion } from "./kinds/kind.ts";
import { badRequest, StatusError, tooLarge } from "./status.ts";
import { DecodeError } from "./time.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/** The real apiserver's request body limit. */
const MAX_BODY = 3 * 1024 * 1024;

export function readBody(req: IncomingMessage, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      req.destroy();
      reject(badRequest("timed out reading the request body"));
    }, timeoutMs);
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        clearTimeout(timer);
        req.removeAllListeners("data");
        req.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Parses JSON; on failure the message is Go's encoding/json syntax error, as the real server reports it. */
export function parseJson(raw: Buffer): { ok: true; value: Json } | { ok: false; message: string } {
  const text = raw.toString("utf8");
  try {
    return { ok: true, value: JSON.parse(text) as Json };
  } catch {
    return { ok: false, message: goJsonSyntaxError(text) };
  }
}

export type FieldValidation = "Strict" | "Warn" | "Ignore";

export interface Decoded {
  obj: JsonObject;
  warnings: string[];
}

/** Decodes a request body as `kind`, the way the real server's codec + strict field validation does. */
export function decodeBody(kind: Kind, raw: Buffer, validation: FieldValidation): Decoded {
  const parsed = parseJson(raw);
  if (!parsed.ok) {
    throw badRequest(
      `the object provided is unrecognized (must be of type ${kind.kind}): couldn't get version/kind; json parse error: ${parsed.message} (${summarizeData(raw)})`,
    );
  }
  if (!isObject(parsed.value)) {
    const v = parsed.value;
    const t = Array.isArray(v) ? "array" : v === null ? "null" : typeof v;
    throw badRequest(
      `the object provided is unrecognized (must be of type ${kind.kind}): couldn't get version/kind; json parse error: json: cannot unmarshal ${t} into Go value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" } (${summarizeData(raw)})`,
    );
  }
  return decodeObject(kind, parsed.value, validation);
}

export function decodeObject(kind: Kind, value: Json, validation: FieldValidation): Decoded {
  if (!isObject(value))
    throw badRequest(`the object provided is unrecognized (must be of type ${kind.kind})`);
  const gv = groupVersion(kind);
  const bodyKind = typeof value.kind === "string" && value.kind !== "" ? value.kind : kind.kind;
  const bodyGV = typeof value.apiVersion === "string" && value.apiVersion !== "" ? value.apiVersion : gv;
  if (bodyKind !== kind.kind) {
    const version = bodyGV.includes("/") ? bodyGV.split("/")[1] : bodyGV;
    throw badRequest(
      `${bodyKind} in version "${version}" cannot be handled as a ${kind.kind}: no kind "${bodyKind}" is registered for version "${bodyGV}" in scheme "pkg/api/legacyscheme/scheme.go:30"`,
    );
  }
  if (bodyGV !== gv) {
    throw badRequest(
      `the API version in the data (${bodyGV}) does not match the expected API version (${gv})`,
    );
  }
  value.apiVersion = gv;
  value.kind = kind.kind;
  let unknown: string[];
  try {
    unknown = decodeInto(value, kind.schema).unknown;
  } catch (e) {
    if (e instanceof DecodeError)
      throw badRequest(
        `${kind.kind} in version "${kind.version}" cannot be handled as a ${kind.kind}: ${e.message}`,
      );
    throw e;
  }
  if (unknown.length > 0 && validation === "Strict") {
    const list = unknown.map((u) => `unknown field "${u}"`);
    throw badRequest(`strict decoding error: ${list.join(", ")}`);
  }
  if (!isObject(value.metadata)) value.metadata = {};
  return { obj: value, warnings: validation === "Warn" ? unknown.map((u) => `unknown field "${u}"`) : [] };
}

export function fieldValidationOf(q: URLSearchParams): FieldValidation {
  const v = q.get("fieldValidation");
  if (v === null || v === "") return "Warn";
  if (v === "Strict" || v === "Warn" || v === "Ignore") return v;
  throw new StatusError(400, "BadRequest", `fieldValidation parameter unsupported: ${v}`);
}

import { isIP } from "node:net";
import type { Cause } from "./status.ts";
import { isObject, type Json } from "./types.ts";

/** Go's `%#v`-ish rendering the real server uses in "Invalid value: …" messages. */
function show(v: Json | undefined): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === undefined || v === null) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export const field = {
  invalid(path: string, value: Json | undefined, detail: string): Cause {
    return { reason: "FieldValueInvalid", message: `Invalid value: ${show(value)}: ${detail}`, field: path };
  },
  required(path: string, detail: string): Cause {
    return { reason: "FieldValueRequired", message: `Required value: ${detail}`, field: path };
  },
  forbidden(path: string, detail: string): Cause {
    return { reason: "FieldValueForbidden", message: `Forbidden: ${detail}`, field: path };
  },
  duplicate(path: string, value: Json): Cause {
    return { reason: "FieldValueDuplicate", message: `Duplicate value: ${show(value)}`, field: path };
  },
  notSupported(path: string, value: Json, allowed: string[]): Cause {
    return {
      reason: "FieldValueNotSupported",
      message: `Unsupported value: ${show(value)}: supported values: ${allowed.map((a) => `"${a}"`).join(", ")}`,
      field: path,
    };
  },
  tooLong(path: string, max: number): Cause {
    return { reason: "FieldValueTooLong", message: `Too long: must have at most ${max} bytes`, field: path };
  },
  immutable(path: string, value: Json | undefined): Cause {
    return {
      reason: "FieldValueInvalid",
      message: `Invalid value: ${show(value)}: field is immutable`,
      field: path,
    };
  },
};

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function dnsSubdomainErrors(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 253) errs.push("must be no more than 253 characters");
  if (!DNS1123_SUBDOMAIN.test(v)) {
    errs.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
  }
  return errs;
}

export function dnsLabelErrors(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push("must be no more than 63 characters");
  if (!DNS1123_LABEL.test(v)) {
    errs.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
  }
  return errs;
}

const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function qualifiedNameErrors(key: string): string[] {
  const parts = key.split("/");
  let name = key;
  const errs: string[] = [];
  if (parts.length === 2) {
    const prefix = parts[0] ?? "";
    name = parts[1] ?? "";
    if (prefix.length === 0) errs.push("prefix part must be non-empty");
    else errs.push(...dnsSubdomainErrors(prefix).map((e) => `prefix part ${e}`));
  } else if (parts.length > 2) {
    return [
      "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name.length === 0) errs.push("name part must be non-empty");
  else if (name.length > 63) errs.push("name part must be no more than 63 characters");
  else if (!QUALIFIED_NAME.test(name)) {
    errs.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
  }
  return errs;
}

export function labelValueErrors(v: string): string[] {
  const errs: string[] = [];
  if (v.length > 63) errs.push("must be no more than 63 characters");
  if (!LABEL_VALUE.test(v)) {
    errs.push(
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
  }
  return errs;
}

export type NameRule = "subdomain" | "label";

/** ObjectMeta validation shared by every kind (name, generateName, labels, annotations). */
export function validateObjectMeta(meta: Json | undefined, rule: NameRule, namespaced: boolean): Cause[] {
  const errs: Cause[] = [];
  if (!isObject(meta)) return [field.required("metadata.name", "name or generateName is required")];
  const name = meta.name;
  const generateName = meta.generateName;
  if (typeof name !== "string" || name === "") {
    if (typeof generateName !== "string" || generateName === "") {
      errs.push(field.required("metadata.name", "name or generateName is required"));
    }
  } else {
    const check = rule === "label" ? dnsLabelErrors : dnsSubdomainErrors;
    for (const e of check(name)) errs.push(field.invalid("metadata.name", name, e));
  }
  if (namespaced && (typeof meta.namespace !== "string" || meta.namespace === "")) {
    errs.push(field.required("metadata.namespace", ""));
  }
  if (meta.labels !== undefined && meta.labels !== null) {
    if (!isObject(meta.labels)) errs.push(field.invalid("metadata.labels", meta.labels, "must be a map"));
    else {
      for (const [k, v] of Object.entries(meta.labels)) {
        for (const e of qualifiedNameErrors(k)) errs.push(field.invalid("metadata.labels", k, e));
        if (typeof v !== "string") errs.push(field.invalid(`metadata.labels`, v, "must be a string"));
        else for (const e of labelValueErrors(v)) errs.push(field.invalid("metadata.labels", v, e));
      }
    }
  }
  if (meta.annotations !== undefined && meta.annotations !== null) {
    if (!isObject(meta.annotations)) {
      errs.push(field.invalid("metadata.annotations", meta.annotations, "must be a map"));
    } else {
      let size = 0;
      for (const [k, v] of Object.entries(meta.annotations)) {
        for (const e of qualifiedNameErrors(k.toLowerCase())) {
          errs.push(field.invalid("metadata.annotations", k, e));
        }
        size += k.length + (typeof v === "string" ? v.length : 0);
      }
      if (size > 262144) {
        errs.push(field.tooLong("metadata.annotations", 262144));
      }
    }
  }
  return errs;
}

export function isValidIP(v: string): boolean {
  return isIP(v) !== 0;
}

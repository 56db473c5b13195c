import { randomBytes } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { inspect } from "node:util";
import type { SecretBinding } from "../../shared/egress-policy.ts";
import type { SandboxEgress } from "./types.ts";

/**
 * A secret's value, held so that no log line, event, error or JSON can print it by accident:
 * only `reveal()` gives the string, and the proxy calls it in one place (the header it rewrites).
 */
export class SecretValue {
  readonly #value: string;
  constructor(value: string) {
    if (/[\r\n\0]/.test(value)) throw new Error("a secret value must not contain CR, LF or NUL");
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return "[secret]";
  }
  toJSON(): string {
    return "[secret]";
  }
  [inspect.custom](): string {
    return "[secret]";
  }
}

/** What the sandbox sees in place of a secret: random, so it says nothing about the value. */
export function newPlaceholder(): string {
  return `pi-secret-${randomBytes(18).toString("base64url")}`;
}

/**
 * The request headers with each bound secret's placeholder turned into its value: only in the
 * binding's header, and only when that header carries the sandbox's placeholder. A placeholder
 * anywhere else (another header, the body, another host) is sent as it is.
 */
export function withSecrets(
  headers: IncomingHttpHeaders,
  bindings: readonly SecretBinding[],
  egress: SandboxEgress,
): IncomingHttpHeaders {
  const out = { ...headers };
  for (const b of bindings) {
    const secret = egress.secrets?.get(b.name);
    const current = out[b.header];
    if (!secret || typeof current !== "string" || !current.includes(secret.placeholder)) continue;
    out[b.header] = b.format.replace("{value}", secret.value.reveal());
  }
  return out;
}

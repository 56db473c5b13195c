import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";

/**
 * A sandbox's default `env` is sealed before it goes on the sandbox's Lease: AES-256-GCM under a
 * key derived (HKDF-SHA256) from the pool token, which only the agent holds. Whoever can read
 * Leases in the sandbox namespace (operators, other controllers, a leaked read-only token) sees
 * ciphertext; opening it needs the agent's Secret. The sandbox id is the additional data, so a
 * sealed env copied onto another sandbox's Lease does not open there.
 *
 * Why not a Secret per sandbox: it would add a create, a read on every use (or a watch over every
 * Secret of the namespace), a delete on every path a sandbox ends by (including expiry), and the
 * RBAC for all of them — for a value that lives exactly as long as the Lease it belongs to.
 * Limit: rotating POOL_TOKEN makes the env of live sandboxes unreadable (their uses then answer
 * `sandbox_failed`); the sandboxes themselves stay.
 */
const VERSION = "v1";
const INFO = "pi-sandbox-runtime/sandbox-env/v1";

const isEnv = (v: unknown): v is Record<string, string> =>
  typeof v === "object" &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === "string");

export class SandboxEnvSeal {
  readonly #key: Buffer;

  constructor(poolToken: string) {
    this.#key = Buffer.from(hkdfSync("sha256", poolToken, "", INFO, 32));
  }

  /** `v1.<iv>.<ciphertext+tag>`, base64url. */
  seal(env: Record<string, string>, sandboxId: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.from(sandboxId));
    const body = Buffer.concat([c.update(JSON.stringify(env), "utf8"), c.final(), c.getAuthTag()]);
    return `${VERSION}.${iv.toString("base64url")}.${body.toString("base64url")}`;
  }

  /** The env, or sandbox_failed when it was sealed under another key, for another sandbox, or altered. */
  open(sealed: string, sandboxId: string): Result<Record<string, string>> {
    const bad = () =>
      err(new AppError("sandbox_failed", "the sandbox's env cannot be read (was POOL_TOKEN changed?)"));
    const [version, ivText, bodyText] = sealed.split(".");
    if (version !== VERSION || !ivText || !bodyText) return bad();
    const iv = Buffer.from(ivText, "base64url");
    const body = Buffer.from(bodyText, "base64url");
    if (iv.length !== 12 || body.length < 16) return bad();
    try {
      const d = createDecipheriv("aes-256-gcm", this.#key, iv);
      d.setAAD(Buffer.from(sandboxId));
      d.setAuthTag(body.subarray(body.length - 16));
      const text = Buffer.concat([d.update(body.subarray(0, body.length - 16)), d.final()]).toString("utf8");
      const parsed: unknown = JSON.parse(text);
      return isEnv(parsed) ? ok(parsed) : bad();
    } catch {
      return bad();
    }
  }
}

import { createHmac } from "node:crypto";

/**
 * The exec token of one sandbox pod: HMAC-SHA256 of the pool token over the pod's namespace and
 * name. Only the agent holds the pool token; each pod gets just its own token (in its env), so a
 * command that reads its exec server's environment can open that pod and no other.
 */
export function podExecToken(poolToken: string, namespace: string, pod: string): string {
  return createHmac("sha256", poolToken).update(`pi-sandbox-exec:${namespace}/${pod}`).digest("base64url");
}

import { createHash, timingSafeEqual } from "node:crypto";

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** Compares bearer tokens in constant time: both sides are hashed first so lengths never differ. */
export function makeTokenCheck(poolToken: string): (authorization: string | undefined) => boolean {
  const expected = digest(poolToken);
  return (authorization) => {
    const m = /^Bearer (.+)$/.exec(authorization ?? "");
    // Hash something even when the header is malformed so the timing does not tell the two apart.
    const given = digest(m?.[1] ?? "");
    return timingSafeEqual(given, expected) && m !== null;
  };
}

export type FenceVerdict =
  | { ok: true; fence: number; raised: boolean }
  | { ok: false; status: 400 | 409; message: string };

/**
 * The highest fencing token (Lease `leaseTransitions`) seen so far. A lower token belongs to a
 * holder whose lease has since passed to someone else, so it is refused; an equal one is the
 * current holder; a higher one is a new holder and raises the mark.
 */
export class FenceMark {
  #highest = 0;
  get highest(): number {
    return this.#highest;
  }
  check(header: string | string[] | undefined): FenceVerdict {
    if (typeof header !== "string" || !/^\d{1,15}$/.test(header.trim())) {
      return { ok: false, status: 400, message: "X-Fence-Token header must be a non-negative integer" };
    }
    const fence = Number(header.trim());
    if (fence < this.#highest) {
      return {
        ok: false,
        status: 409,
        message: `fencing token ${fence} is lower than ${this.#highest}: the lease has passed to another holder`,
      };
    }
    const raised = fence > this.#highest;
    this.#highest = fence;
    return { ok: true, fence, raised };
  }
}

import { V1MicroTime } from "@kubernetes/client-node";

/**
 * Lease times are MicroTime (six fractional digits); a plain Date would be sent as `.123Z`
 * and rejected with 400, so every time written to a Lease goes through here.
 */
export function microNow(date: Date = new Date()): V1MicroTime {
  return new V1MicroTime(date.getTime());
}

/** The wire form, e.g. `2026-01-02T03:04:05.123000Z`. */
export function formatMicroTime(date: Date): string {
  return new V1MicroTime(date.getTime()).toISOString();
}

/** client-node returns MicroTime fields as strings on read (and Dates for what we wrote ourselves). */
export function microTimeString(v: Date | string | undefined | null): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  return formatMicroTime(v);
}

/** Any MicroTime representation back to a MicroTime object, so a read-modify-write PUT never sends `.123Z`. */
export function toMicroTime(v: Date | string | undefined | null): V1MicroTime | undefined {
  if (v === undefined || v === null) return undefined;
  if (v instanceof V1MicroTime) return v;
  const ms = typeof v === "string" ? Date.parse(v) : v.getTime();
  return Number.isNaN(ms) ? undefined : new V1MicroTime(ms);
}

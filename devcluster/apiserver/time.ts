import type { Json } from "./types.ts";

/** A decode failure: the real server reports these as 400 "cannot be handled as a <Kind>". */
export class DecodeError extends Error {}

const RFC3339_MICRO_LAYOUT = "2006-01-02T15:04:05.000000Z07:00";
const RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00";
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})/;
const ZONE = /^(Z|[+-]\d{2}:\d{2})$/;

function fail(value: string, layout: string, what: string, as: string): never {
  throw new DecodeError(
    `parsing time ${JSON.stringify(value)} as ${JSON.stringify(layout)}: cannot parse ${JSON.stringify(what)} as ${JSON.stringify(as)}`,
  );
}

function epochMs(head: RegExpMatchArray, zone: string): number {
  const [, y, mo, d, h, mi, s] = head.map(Number) as [number, number, number, number, number, number, number];
  let ms = Date.UTC(y, mo - 1, d, h, mi, s);
  if (zone !== "Z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const [oh, om] = zone.slice(1).split(":").map(Number) as [number, number];
    ms -= sign * (oh * 60 + om) * 60_000;
  }
  return ms;
}

function utcSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

/** metav1.MicroTime: exactly six fractional digits on input (Go layout RFC3339Micro); UTC on output. */
export function parseMicroTime(value: string): string {
  const head = value.match(DATE_TIME);
  if (!head) fail(value, RFC3339_MICRO_LAYOUT, value, "2006");
  const rest = value.slice(head[0].length);
  const frac = rest.match(/^\.(\d{6})/);
  if (!frac) fail(value, RFC3339_MICRO_LAYOUT, rest, ".000000");
  const zone = rest.slice(7);
  if (!ZONE.test(zone)) fail(value, RFC3339_MICRO_LAYOUT, zone, "Z07:00");
  const ms = epochMs(head, zone);
  return `${utcSeconds(ms).slice(0, 19)}.${frac[1]}Z`;
}

/** metav1.Time: RFC 3339 (any fraction accepted) on input, whole seconds in UTC on output. */
export function parseTime(value: string): string {
  const head = value.match(DATE_TIME);
  if (!head) fail(value, RFC3339_LAYOUT, value, "2006");
  let rest = value.slice(head[0].length);
  const frac = rest.match(/^\.\d+/);
  if (frac) rest = rest.slice(frac[0].length);
  if (!ZONE.test(rest)) fail(value, RFC3339_LAYOUT, rest, "Z07:00");
  return utcSeconds(epochMs(head, rest));
}

export function nowTime(): string {
  return utcSeconds(Date.now());
}

export function timeAfterSeconds(seconds: number): string {
  return utcSeconds(Date.now() + seconds * 1000);
}

export function jsonType(v: Json): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v === "object" ? "object" : typeof v;
}

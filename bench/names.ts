import type { BenchRow } from "./types.ts";

/**
 * Stable row names for latest.json (`acquire_release/pool=8`, `exec_http`, ...). Suites written
 * by others name rows in prose; the prose is kept as `extra.what`. A name that matches no rule
 * is kept as it is.
 */
const RULES: Array<[RegExp, (m: RegExpMatchArray) => string]> = [
  [/^lease PUT/i, () => "lease_put"],
  [/^acquire\+release, free pool of (\d+)/i, (m) => `acquire_release/pool=${m[1]}`],
  [/^burst of (\d+) acquisitions.*pool of (\d+)/i, (m) => `acquire_burst${m[1]}/pool=${m[2]}`],
  [/^acquire under contention/i, () => "acquire_conflicts/3-replicas"],
  [/\(http mode\)/i, () => "exec_http"],
  [/\(api mode/i, () => "exec_api"],
  [/^http executor/i, () => "exec_http_standalone"],
];

export function canonicalName(name: string): string {
  for (const [re, to] of RULES) {
    const m = name.match(re);
    if (m) return to(m);
  }
  return name;
}

export function canonicalRow(row: BenchRow): BenchRow {
  const name = canonicalName(row.name);
  if (name === row.name) return row;
  return { ...row, name, extra: { what: row.name, ...row.extra } };
}

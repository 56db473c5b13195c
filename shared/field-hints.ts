import type { z } from "zod";

/**
 * What turns zod's issues into details a person can act on: an unknown key is the likeliest cause
 * of a 400 (a typo, or a field name from another API), so it is named first, with the known key it
 * is closest to. Only zod's own schema description is read (`_zod.def`), never the input.
 */

interface Def {
  type?: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  getter?: () => z.ZodType;
  valueType?: z.ZodType;
  element?: z.ZodType;
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** The object schema reached by `path` (wrappers such as optional/default/pipe unwrapped), if any. */
function objectAt(schema: z.ZodType, path: readonly PropertyKey[]): Def | undefined {
  let cur: z.ZodType | undefined = schema;
  let i = 0;
  for (let guard = 0; cur && guard < 64; guard++) {
    const def = defOf(cur);
    const inner = def.innerType ?? (def.type === "pipe" ? def.in : undefined) ?? def.getter?.();
    if (inner) {
      cur = inner;
      continue;
    }
    if (i === path.length) return def.type === "object" ? def : undefined;
    const key = path[i++];
    if (def.type === "object") cur = def.shape?.[String(key)];
    else cur = def.valueType ?? def.element;
  }
  return undefined;
}

/** Levenshtein distance, small strings only (field names). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The known key an unknown one most likely meant: a near spelling (a third of its length or 2
 * edits, case ignored), or a known key that starts with it (`timeout` → `timeoutSeconds`).
 */
export function closestKey(unknown: string, known: readonly string[]): string | undefined {
  const u = unknown.toLowerCase();
  let best: { key: string; d: number } | undefined;
  for (const key of known) {
    const k = key.toLowerCase();
    const prefix = Math.min(u.length, k.length) >= 3 && (k.startsWith(u) || u.startsWith(k));
    const d = prefix ? 0.5 : distance(u, k);
    if (d <= Math.max(2, Math.floor(u.length / 3)) && (!best || d < best.d)) best = { key, d };
  }
  return best?.key;
}

export interface FieldIssue {
  path: string;
  message: string;
}

const joinPath = (path: readonly PropertyKey[]) => path.map(String).join(".");

/**
 * zod's issues as `{path, message}`, unknown keys first (one entry per key, with a "did you mean"
 * when a known key is near); a missing field says so instead of "received undefined".
 */
export function fieldIssues(schema: z.ZodType | undefined, error: z.ZodError): FieldIssue[] {
  const unknown: FieldIssue[] = [];
  const rest: FieldIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      const known = schema ? Object.keys(objectAt(schema, issue.path)?.shape ?? {}) : [];
      for (const key of issue.keys) {
        const near = closestKey(key, known);
        unknown.push({
          path: joinPath([...issue.path, key]),
          message: `unknown field${near ? `; did you mean "${near}"?` : ""}`,
        });
      }
      continue;
    }
    const missing = issue.code === "invalid_type" && /received undefined$/.test(issue.message);
    rest.push({
      path: joinPath(issue.path) || "(root)",
      message: missing ? `required (${issue.expected})` : issue.message,
    });
  }
  return [...unknown, ...rest];
}

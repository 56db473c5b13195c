const SUFFIX: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** Bytes in a Kubernetes resource quantity (`64Mi`, `1G`, `500000`); undefined if unparseable. */
export function quantityBytes(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  if (typeof q === "number") return Math.floor(q);
  const m = /^(\d+(?:\.\d+)?)(|k|M|G|T|Ki|Mi|Gi|Ti)$/.exec(q.trim());
  if (!m) return undefined;
  const mult = SUFFIX[m[2] ?? ""];
  return mult === undefined ? undefined : Math.floor(Number(m[1]) * mult);
}

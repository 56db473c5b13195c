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

/** Millicores in a CPU quantity (`500m`, `1`, `0.25`); undefined if unparseable. */
export function quantityMillis(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  if (typeof q === "number") return Math.round(q * 1000);
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q.trim());
  if (!m) return undefined;
  return m[2] === "m" ? Math.round(Number(m[1])) : Math.round(Number(m[1]) * 1000);
}

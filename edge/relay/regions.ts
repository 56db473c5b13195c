import { AppError, err, ok, type Result } from "../../shared/errors.ts";

export const REGION_HEADER = "X-Sandbox-Region";

/** Continent hints (request.cf.continent) to region-name prefixes, for "nearest" routing. */
const CONTINENT_PREFIX: Record<string, string[]> = {
  EU: ["eu"],
  NA: ["us", "na", "ca"],
  SA: ["sa", "br"],
  AS: ["ap", "as", "in", "jp"],
  OC: ["ap", "au", "oc"],
  AF: ["af", "eu"],
};

export interface RegionChoice {
  /** Regions to try in order: the chosen one first, then the failover candidates. */
  order: string[];
  /** Why the first was chosen (claim, header, nearest). */
  source: "claim" | "header" | "nearest";
}

/**
 * Pick the region: the tenant's claim, else a validated X-Sandbox-Region header, else the nearest
 * configured region (by continent hint, else the first configured). Failover follows the list.
 */
export function chooseRegions(opts: {
  regions: readonly string[];
  claim: string | undefined;
  header: string | null | undefined;
  continent: string | undefined;
}): Result<RegionChoice> {
  const { regions } = opts;
  const rest = (first: string) => [first, ...regions.filter((r) => r !== first)];
  if (opts.claim && regions.includes(opts.claim)) return ok({ order: rest(opts.claim), source: "claim" });
  if (opts.header !== null && opts.header !== undefined) {
    const h = opts.header.trim().toLowerCase();
    if (!regions.includes(h)) {
      return err(new AppError("invalid_request", `${REGION_HEADER} must be one of: ${regions.join(", ")}`));
    }
    return ok({ order: rest(h), source: "header" });
  }
  const prefixes = (opts.continent && CONTINENT_PREFIX[opts.continent]) || [];
  const near = regions.find((r) => prefixes.some((p) => r.startsWith(p))) ?? regions[0]!;
  return ok({ order: rest(near), source: "nearest" });
}

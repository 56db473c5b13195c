import type { AppContext } from "../app-env.ts";
import { chooseRegions, REGION_HEADER } from "./regions.ts";

/** Regions to try for this request, in order (claim, header, nearest; then the others). */
export function regionOrder(c: AppContext): string[] {
  const end = c.get("spans").start("edge-region");
  try {
    return pickRegions(c);
  } finally {
    end();
  }
}

function pickRegions(c: AppContext): string[] {
  const cf = (c.req.raw as Request & { cf?: { continent?: unknown } }).cf;
  const choice = chooseRegions({
    regions: c.get("deps").config.regions,
    claim: c.get("principal").region,
    header: c.req.header(REGION_HEADER),
    continent: typeof cf?.continent === "string" ? cf.continent : undefined,
  });
  if (!choice.ok) throw choice.error;
  return choice.value.order;
}

/** Headers every relay carries from the client. */
export function clientHeaders(c: AppContext, accept: string): Record<string, string> {
  const h: Record<string, string> = { "content-type": "application/json", accept };
  const clientId = c.get("clientRequestId");
  if (clientId) h["x-client-request-id"] = clientId;
  return h;
}

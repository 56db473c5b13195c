import { z } from "zod";
import { PoolSnapshotSchema } from "../../shared/api.ts";
import { AppError, ErrorBodySchema, ErrorEnvelopeSchema } from "../../shared/errors.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { relayFrom } from "../relay/from-context.ts";
import { REGION_HEADER } from "../relay/regions.ts";

export const PoolOverviewSchema = z.object({
  requestId: z.string(),
  regions: z.array(
    z.object({ region: z.string(), pool: PoolSnapshotSchema.optional(), error: ErrorBodySchema.optional() }),
  ),
});

/** `?region=` or X-Sandbox-Region narrows to one configured region; otherwise all of them. */
export function requestedRegions(c: AppContext): string[] {
  const all = c.get("deps").config.regions;
  const asked = c.req.query("region") ?? c.req.header(REGION_HEADER);
  if (asked === undefined) return all;
  const r = asked.trim().toLowerCase();
  if (!all.includes(r)) throw new AppError("invalid_request", `region must be one of: ${all.join(", ")}`);
  return [r];
}

/** GET /v1/pool — each region's pool snapshot, from one of its agents (no failover: per region). */
export const poolRoute: RouteDef = {
  method: "GET",
  path: "/v1/pool",
  auth: "tenant",
  scope: "sandbox:admin",
  doc: {
    summary: "Pool snapshot of every region (or one, with ?region=)",
    tags: ["admin"],
    response: PoolOverviewSchema,
    parameters: [{ name: "region", in: "query", description: "only this region" }],
  },
  async handler(c) {
    const { config } = c.get("deps");
    const requestId = c.get("requestId");
    const regions = await Promise.all(
      requestedRegions(c).map(async (region) => {
        const out = await relayFrom(c, {
          method: "GET",
          path: "/v1/pool",
          regions: [region],
          timeoutMs: Math.min(config.relayTimeoutMs, 15_000),
        });
        const body: unknown = await out.response.json().catch(() => null);
        const pool = PoolSnapshotSchema.safeParse(body);
        if (out.response.ok && pool.success) return { region, pool: pool.data };
        const env = ErrorEnvelopeSchema.safeParse(body);
        return {
          region,
          error: env.success
            ? env.data.error
            : {
                code: "agent_unavailable" as const,
                message: `agent answered ${out.response.status}`,
                requestId,
              },
        };
      }),
    );
    return c.json({ requestId, regions });
  },
};

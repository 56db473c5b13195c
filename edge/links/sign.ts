import { signPortLink } from "../../shared/port-link-token.ts";
import type { EdgeConfig } from "../config.ts";
import { linkKeyFor } from "./keys.ts";
import { linkUrl } from "./url.ts";

/** What a link's token grants: one link of one sandbox's port, for one tenant, until expiry. */
export interface LinkGrant {
  linkId: string;
  sandboxId: string;
  tenant: string;
  port: number;
  public: boolean;
  /** ISO 8601, as the agent recorded it. */
  expiresAt: string;
}

/**
 * The one signer of link URLs (POST …/ports/:port/links, the list, and chat's open_port_link):
 * the token signed with the sandbox's region's link key, under this edge's host (`apiUrl`).
 * The URL holds the token: never log it.
 */
export async function signedLinkUrl(
  config: EdgeConfig,
  apiUrl: string,
  region: string,
  g: LinkGrant,
): Promise<string> {
  const token = await signPortLink(await linkKeyFor(config, region), {
    lid: g.linkId,
    sid: g.sandboxId,
    tid: g.tenant,
    port: g.port,
    pub: g.public,
    exp: Math.floor(Date.parse(g.expiresAt) / 1000),
  });
  return linkUrl(apiUrl, g.linkId, token);
}

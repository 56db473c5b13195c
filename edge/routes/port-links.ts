import {
  LinkIdSchema,
  type PortLink,
  PortLinkCreateRequestSchema,
  PortLinkListSchema,
  type PortLinkRecord,
  PortLinkRecordListSchema,
  PortLinkRecordSchema,
  PortLinkSchema,
  PortParamSchema,
} from "../../shared/api.ts";
import { AppError, parseOrError } from "../../shared/errors.ts";
import { linkNotFound } from "../../shared/port-link-token.ts";
import type { AppContext, RouteDef } from "../app-env.ts";
import { encodeJson, readJson } from "../http/json.ts";
import { finishRelay } from "../http/relay-response.ts";
import { signedLinkUrl } from "../links/sign.ts";
import { REGION_HEADER } from "../relay/regions.ts";
import { idParam, relayToSandbox, sandboxHome } from "./sandboxes.ts";

/**
 * /v1/sandboxes/:id/ports…: expiring links to a sandbox's ports (issue 27 item 3). The agent keeps
 * the link on the sandbox (revocable, gone with it); the edge signs its token into the URL, so the
 * token is never stored anywhere. Requests to a link are served by links/proxy.ts. http exec mode
 * only (api mode answers 501 not_supported_in_api_mode).
 */

const portParam = {
  name: "port",
  in: "path" as const,
  required: true,
  description: "port in the sandbox, 1-65535",
};

/** `:port` must be one before anything is relayed. */
function checkPort(c: AppContext): void {
  const port = parseOrError(PortParamSchema, c.req.param("port") ?? "", "port");
  if (!port.ok) throw new AppError("port_not_allowed", port.error.message);
}

/** A recorded link with its URL: the token signed for the sandbox's tenant (the caller: the agent checked). */
async function withUrl(
  c: AppContext,
  sandboxId: string,
  region: string,
  link: PortLinkRecord,
): Promise<PortLink> {
  const url = await signedLinkUrl(c.get("deps").config, c.req.url, region, {
    linkId: link.id,
    sandboxId,
    tenant: c.get("principal").tenant,
    port: link.port,
    public: link.public,
    expiresAt: link.expiresAt,
  });
  return { ...link, url };
}

/** The agent's answer with each link's URL added; any other answer passed on as it is. */
async function answerLinks(
  c: AppContext,
  status: 200 | 201,
  out: Awaited<ReturnType<typeof relayToSandbox>>,
) {
  if (out.response.status !== status) return finishRelay(c, out);
  const home = sandboxHome(c);
  const body: unknown = await out.response.json().catch(() => null);
  const headers = { [REGION_HEADER]: out.region, "X-Request-Id": c.get("requestId") };
  if (status === 201) {
    const link = PortLinkRecordSchema.safeParse(body);
    if (!link.success) throw new AppError("agent_unavailable", "the agent sent a malformed link");
    return c.json(await withUrl(c, home.id, home.region, link.data), 201, headers);
  }
  const list = PortLinkRecordListSchema.safeParse(body);
  if (!list.success) throw new AppError("agent_unavailable", "the agent sent a malformed link list");
  const links = await Promise.all(list.data.links.map((l) => withUrl(c, home.id, home.region, l)));
  return c.json({ links }, 200, headers);
}

export const createPortLinkRoute: RouteDef = {
  method: "POST",
  path: "/v1/sandboxes/:id/ports/:port/links",
  auth: "tenant",
  scope: "sandbox:exec",
  body: true,
  doc: {
    summary:
      "Open an expiring link to a port of the sandbox (201): `url` is `<link id>.<this host>`, its own origin; private unless `public` (then requests need your JWT too). It ends at `expiresAt`, on revoke, or with the sandbox",
    tags: ["ports"],
    request: PortLinkCreateRequestSchema,
    response: PortLinkSchema,
    successStatus: "201",
    parameters: [idParam, portParam],
  },
  async handler(c) {
    checkPort(c);
    const parsed = parseOrError(PortLinkCreateRequestSchema, readJson(c), "link request");
    if (!parsed.ok) throw parsed.error;
    return answerLinks(c, 201, await relayToSandbox(c, { method: "POST", body: encodeJson(parsed.value) }));
  },
};

export const listPortLinksRoute: RouteDef = {
  method: "GET",
  path: "/v1/sandboxes/:id/ports/links",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "The sandbox's open port links (unexpired, unrevoked), each with its URL",
    tags: ["ports"],
    response: PortLinkListSchema,
    parameters: [idParam],
  },
  async handler(c) {
    return answerLinks(c, 200, await relayToSandbox(c, { method: "GET" }));
  },
};

export const revokePortLinkRoute: RouteDef = {
  method: "DELETE",
  path: "/v1/sandboxes/:id/ports/:port/links/:linkId",
  auth: "tenant",
  scope: "sandbox:exec",
  doc: {
    summary: "Revoke a port link (204): its next request is 404 link_not_found",
    tags: ["ports"],
    parameters: [
      idParam,
      portParam,
      { name: "linkId", in: "path", required: true, description: "the link's id (from POST …/links)" },
    ],
    successStatus: "204",
  },
  async handler(c) {
    checkPort(c);
    if (!LinkIdSchema.safeParse(c.req.param("linkId")).success) throw linkNotFound();
    return finishRelay(c, await relayToSandbox(c, { method: "DELETE" }));
  },
};

export const PORT_LINK_ROUTES: readonly RouteDef[] = [
  createPortLinkRoute,
  listPortLinksRoute,
  revokePortLinkRoute,
];

import type { V1Lease } from "@kubernetes/client-node";
import {
  PORT_LINK_LIMITS,
  type PortLinkCreateRequest,
  type PortLinkRecord,
  PortLinkRecordListSchema,
} from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { linkNotFound } from "../../shared/port-link-token.ts";
import type { EventBus } from "../events/bus.ts";
import { randomLowerAlnum, SANDBOX_ANNOTATIONS } from "../pool-state/sandbox-record.ts";
import type { SandboxService } from "./service.ts";

/**
 * A sandbox's open port links, kept on its Lease (SANDBOX_ANNOTATIONS.links) like its network
 * policy: any replica lists, creates, revokes and checks them, and they end with the sandbox (its
 * Lease passes on, the link's sandbox id names nothing). The token that grants a link is signed by
 * the edge and never stored; a link missing here is revoked, whatever its token says.
 */

export interface PortLinksOptions {
  sandboxes: SandboxService;
  /** The exec server's port in the pod: never linked. */
  execServerPort: number;
  /** `port_link.created` / `port_link.revoked` (tenant-scoped; ids, never tokens). */
  bus?: EventBus;
  now?: () => number;
}

export class PortLinks {
  readonly #o: PortLinksOptions;
  readonly #now: () => number;

  constructor(o: PortLinksOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Whether the tenant's sandbox is there to be linked (as the cache has it). */
  exists(tenant: string, id: string): boolean {
    return this.#o.sandboxes.leaseOf(tenant, id).ok;
  }

  /** The sandbox's links that are still open (expired ones are not shown, and pruned on the next write). */
  list(tenant: string, id: string): Result<PortLinkRecord[]> {
    const lease = this.#o.sandboxes.leaseOf(tenant, id);
    return lease.ok ? ok(this.#open(lease.value)) : lease;
  }

  async create(
    tenant: string,
    id: string,
    requestId: string,
    port: number,
    req: PortLinkCreateRequest,
  ): Promise<Result<PortLinkRecord>> {
    const refused = this.refusedPort(port);
    if (refused) return err(refused);
    const now = this.#now();
    const link: PortLinkRecord = {
      id: mintLinkId(),
      port,
      public: req.public,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + req.ttlSeconds * 1000).toISOString(),
    };
    const written = await this.#o.sandboxes.annotate(tenant, id, requestId, `link port ${port}`, (lease) => {
      const open = this.#open(lease);
      if (open.length >= PORT_LINK_LIMITS.maxOpenLinks) {
        return err(
          new AppError(
            "link_limit",
            `the sandbox has ${open.length} open links (at most ${PORT_LINK_LIMITS.maxOpenLinks}): revoke one or let it expire`,
          ),
        );
      }
      return ok({ [SANDBOX_ANNOTATIONS.links]: stored([...open, link]) });
    });
    if (!written.ok) return written;
    this.#o.bus?.emit({
      type: "port_link.created",
      requestId,
      tenant,
      data: { sandboxId: id, linkId: link.id, port, public: link.public, expiresAt: link.expiresAt },
    });
    return ok(link);
  }

  async revoke(
    tenant: string,
    id: string,
    requestId: string,
    port: number,
    linkId: string,
  ): Promise<Result<void>> {
    const written = await this.#o.sandboxes.annotate(
      tenant,
      id,
      requestId,
      `revoke link ${linkId}`,
      (lease) => {
        const open = this.#open(lease);
        const rest = open.filter((l) => !(l.id === linkId && l.port === port));
        if (rest.length === open.length) return err(linkNotFound());
        return ok({ [SANDBOX_ANNOTATIONS.links]: stored(rest) });
      },
    );
    if (!written.ok) return written;
    this.#o.bus?.emit({
      type: "port_link.revoked",
      requestId,
      tenant,
      data: { sandboxId: id, linkId, port },
    });
    return ok(undefined);
  }

  /**
   * The link a request presents, if it is still open on this tenant's sandbox for this port; every
   * other case (sandbox gone or another tenant's, revoked, expired, another port) is link_not_found.
   * The cache answers; a link it does not hold is looked up on the API server once, since another
   * replica may have created it a moment ago (the edge verified the token: only genuine links,
   * fresh or revoked, get this far).
   */
  async check(tenant: string, id: string, linkId: string, port: number): Promise<Result<PortLinkRecord>> {
    const find = (lease: V1Lease) => this.#open(lease).find((l) => l.id === linkId && l.port === port);
    const cached = this.#o.sandboxes.leaseOf(tenant, id);
    if (!cached.ok) return err(linkNotFound());
    const link = find(cached.value);
    if (link) return ok(link);
    const now = await this.#o.sandboxes.leaseNow(tenant, id);
    const fresh = now.ok ? find(now.value) : undefined;
    return fresh ? ok(fresh) : err(linkNotFound());
  }

  /** A port no link may reach: the exec server's own (1–65535 is the schema's). */
  refusedPort(port: number): AppError | undefined {
    return port === this.#o.execServerPort
      ? new AppError("port_not_allowed", `port ${port} is the sandbox's exec server: it cannot be linked`)
      : undefined;
  }

  #open(lease: V1Lease): PortLinkRecord[] {
    return openLinksOf(lease, this.#now());
  }
}

/** A sandbox's open links as the Lease cache has them (the agent's snapshot: the dashboard lists them). */
export function cachedOpenLinks(sandboxes: SandboxService, tenant: string, id: string): PortLinkRecord[] {
  const lease = sandboxes.leaseOf(tenant, id);
  return lease.ok ? openLinksOf(lease.value, Date.now()) : [];
}

/** The links on a sandbox's Lease that are open at `nowMs` (also what the agent's snapshot shows). */
export function openLinksOf(lease: V1Lease, nowMs: number): PortLinkRecord[] {
  const raw = lease.metadata?.annotations?.[SANDBOX_ANNOTATIONS.links];
  if (!raw) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return [];
  }
  // An annotation that is not the stored shape opens nothing (fail closed).
  const links = PortLinkRecordListSchema.safeParse(parsed);
  return links.success ? links.data.links.filter((l) => Date.parse(l.expiresAt) > nowMs) : [];
}

/** `pl-` + 20 of [a-z0-9] (LinkIdSchema): a DNS label of its own. */
/** The annotation's value: the same shape as the list the agent answers. */
const stored = (links: PortLinkRecord[]) => JSON.stringify({ links });

const mintLinkId = () => `pl-${randomLowerAlnum(20)}`;

import { type CallOptions, callOptions, type Transport } from "./transport.ts";
import type { PortLink, PortLinkCreateRequestInput } from "./types.ts";

/**
 * `sandbox.ports`: expiring links to the sandbox's ports (exec mode `http`; `api` answers 501).
 * A link's `url` is its own origin (`https://<id>.<edge host>/?pi_link=<token>`); a private one
 * (the default) also needs the tenant's JWT on every request, a public one only the URL.
 */
export class SandboxPorts {
  constructor(
    private readonly transport: Transport,
    private readonly sandboxBase: string,
  ) {}

  /** Open a link to `port` (1–65535): `{ttlSeconds? (10–86400, default 3600), public? (default false)}`. */
  link(port: number, opts: PortLinkCreateRequestInput & CallOptions = {}): Promise<PortLink> {
    const { ttlSeconds, public: isPublic, ...call } = opts;
    return this.transport.json<PortLink>({
      method: "POST",
      path: `${this.sandboxBase}/ports/${port}/links`,
      json: {
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
        ...(isPublic !== undefined ? { public: isPublic } : {}),
      },
      // Each call makes a new link, yet retried like every call: only answers that say it was not
      // served (429, 503 queue_timeout …) are retried, so it cannot make two.
      ...callOptions(call),
    });
  }

  /** The open links (unexpired, unrevoked), with their URLs. */
  async links(opts: CallOptions = {}): Promise<PortLink[]> {
    const body = await this.transport.json<{ links: PortLink[] }>({
      method: "GET",
      path: `${this.sandboxBase}/ports/links`,
      ...callOptions(opts),
    });
    return body.links;
  }

  /** Revoke a link: its next request is 404 link_not_found. */
  async revoke(link: Pick<PortLink, "id" | "port">, opts: CallOptions = {}): Promise<void> {
    await this.transport.json<void>({
      method: "DELETE",
      path: `${this.sandboxBase}/ports/${link.port}/links/${encodeURIComponent(link.id)}`,
      ...callOptions(opts),
    });
  }
}

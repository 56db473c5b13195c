import {
  type Sandbox,
  type SandboxCreateRequest,
  SandboxCreateRequestSchema,
  type SandboxNetwork,
} from "../../shared/api.ts";
import type { NetworkPolicyInput } from "../../shared/egress-policy.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import type { NetworkView } from "../../shared/tools/network-tool.ts";
import type { AcquiredSandbox } from "../requests/leased-sandbox.ts";
import { leaseOfSandbox, type SandboxUse } from "../requests/sandbox-lease.ts";

/** The part of the agent's SandboxService a chat session uses; SandboxService satisfies it. */
export interface SessionSandboxes {
  get(tenant: string, id: string): Result<Sandbox>;
  create(
    tenant: string,
    requestId: string,
    req: SandboxCreateRequest,
    signal: AbortSignal,
  ): Promise<Result<{ sandbox: Sandbox; created: boolean }>>;
  delete(tenant: string, id: string, requestId: string): Promise<Result<void>>;
  setNetwork(
    tenant: string,
    id: string,
    requestId: string,
    network: NetworkPolicyInput,
  ): Promise<Result<SandboxNetwork>>;
  networkView(tenant: string, id: string | undefined): NetworkView;
  use<T>(
    tenant: string,
    id: string,
    ctx: { requestId: string; signal: AbortSignal; what: string },
    fn: (use: SandboxUse) => Promise<Result<T>>,
  ): Promise<Result<T>>;
}

/**
 * The sandbox of a chat session (`sandbox: "session"`): the one the edge remembered, or one created
 * at this turn's first tool call. In place of a fresh lease, `acquire` opens a use of the sandbox
 * that lasts until the request releases it, so the sandbox's Lease is renewed for the whole turn
 * and idle-expires only between turns; releasing ends the use and keeps the sandbox.
 */
export class SessionSandbox {
  private id: string | undefined;
  /** Created by this turn: deleted if the turn fails, since the edge binds only finished turns. */
  private created: string | undefined;
  /** The sandbox named by the edge no longer exists (idle-expired or deleted): the model is told. */
  readonly expired: string | undefined;
  /** The turn's `network` is on the sandbox (set at the first acquire). */
  private networkApplied = false;

  constructor(
    private readonly sandboxes: SessionSandboxes,
    private readonly ctx: { tenant: string; requestId: string },
    earlierId: string | undefined,
    /** The turn's `network`: the sandbox's policy from this turn on (absent: unchanged). */
    private readonly network?: NetworkPolicyInput,
  ) {
    const live = earlierId !== undefined && sandboxes.get(ctx.tenant, earlierId).ok;
    this.id = live ? earlierId : undefined;
    this.expired = earlierId !== undefined && !live ? earlierId : undefined;
  }

  /** The session's sandbox after this turn (undefined while none was ever created). */
  get sandboxId(): string | undefined {
    return this.id;
  }

  /**
   * What the model is told the network is: the sandbox's stored policy, or this turn's `network`
   * until the first tool call puts it on the sandbox (from then on the stored one, which the owner
   * may replace during the turn).
   */
  networkView(): NetworkView {
    const stored = this.sandboxes.networkView(this.ctx.tenant, this.id);
    if (!this.network || this.networkApplied) return stored;
    return { ...stored, allow: this.network.allow ?? [], deny: this.network.deny ?? [] };
  }

  /** The turn failed: a sandbox it created would never be bound to the session, so delete it now. */
  async discardCreated(): Promise<void> {
    const id = this.created;
    this.created = undefined;
    if (id !== undefined) await this.sandboxes.delete(this.ctx.tenant, id, this.ctx.requestId);
  }

  async acquire(signal: AbortSignal): Promise<Result<AcquiredSandbox>> {
    const { tenant, requestId } = this.ctx;
    if (this.id === undefined || !this.sandboxes.get(tenant, this.id).ok) {
      const made = await this.sandboxes.create(
        tenant,
        requestId,
        SandboxCreateRequestSchema.parse(this.network ? { network: this.network } : {}),
        signal,
      );
      if (!made.ok) return made;
      this.id = made.value.sandbox.id;
      this.created = this.id;
    } else if (this.network) {
      const set = await this.sandboxes.setNetwork(tenant, this.id, requestId, this.network);
      if (!set.ok) return set;
    }
    this.networkApplied = true;
    const id = this.id;
    return new Promise<Result<AcquiredSandbox>>((resolve) => {
      let endUse = () => {};
      const ended = new Promise<Result<void>>((r) => {
        endUse = () => r(ok(undefined));
      });
      const using = this.sandboxes.use(
        tenant,
        id,
        { requestId, signal, what: "chat session" },
        async (use) => {
          resolve(
            ok(
              leaseOfSandbox(use, async () => {
                endUse();
                await using;
              }),
            ),
          );
          return ended;
        },
      );
      // A use that failed before it began (sandbox gone, Lease write refused): the acquire's answer.
      void using.then(
        (r) => {
          if (!r.ok) resolve(r);
        },
        (cause: unknown) =>
          resolve(
            err(new AppError("sandbox_failed", `could not use sandbox ${id}: ${String(cause)}`, { cause })),
          ),
      );
    });
  }
}

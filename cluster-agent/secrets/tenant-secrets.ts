import { createHash } from "node:crypto";
import type { V1Secret } from "@kubernetes/client-node";
import type { SecretInfo, SecretPutRequest } from "../../shared/api.ts";
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { SecretValue } from "../egress/secrets.ts";
import type { StoredSecret } from "../egress/types.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";
import { TENANT_ANNOTATION } from "../pool-state/labels.ts";

export interface TenantSecretsOptions {
  clients: Pick<KubeClients, "core">;
  /** Where the per-tenant Secrets live (SECRETS_NAMESPACE): the system namespace, never the sandboxes'. */
  namespace: string;
  maxPerTenant: number;
  timeoutMs?: number;
  /**
   * How long the proxy's reads are reused. A change made through this replica is seen at once;
   * one made through another replica within this time (a deleted or rebound secret).
   */
  cacheMs?: number;
  now?: () => number;
}

/** Bindings (no values) per secret name, as the Secret's annotation keeps them. */
const BINDINGS_ANNOTATION = "pi-sandbox-runtime/secret-bindings";
const LABELS = {
  "app.kubernetes.io/managed-by": "pi-sandbox-runtime",
  "pi-sandbox-runtime/kind": "tenant-secrets",
};

type Binding = Omit<StoredSecret, "name" | "value">;

const unavailable = (e: unknown) =>
  new AppError("agent_unavailable", "the secret store (Kubernetes API) did not answer; try again", {
    cause: e,
  });
const missing = (name: string) => new AppError("secret_not_found", `no secret ${name}`);

/** One Kubernetes Secret per tenant; its name is a hash, so a tenant id needs no escaping and says nothing. */
export const tenantSecretName = (tenant: string) =>
  `pi-tenant-secrets-${createHash("sha256").update(tenant).digest("hex").slice(0, 40)}`;

function bindingsOf(s: V1Secret | undefined): Record<string, Binding> {
  try {
    const v: unknown = JSON.parse(s?.metadata?.annotations?.[BINDINGS_ANNOTATION] ?? "{}");
    return typeof v === "object" && v !== null ? (v as Record<string, Binding>) : {};
  } catch {
    return {};
  }
}

const info = (name: string, b: Binding): SecretInfo => ({
  name,
  hosts: b.hosts,
  header: b.header ?? "Authorization",
  format:
    b.format ??
    ((b.header ?? "authorization").toLowerCase() === "authorization" ? "Bearer {value}" : "{value}"),
  updatedAt: b.updatedAt,
});

/**
 * A tenant's secrets (issue 26), kept in a Kubernetes Secret of the system namespace: values in
 * `data` (base64, as Kubernetes keeps every Secret), bindings in an annotation. Only the agent's
 * service account may read it (k8s/base/rbac.yaml); sandboxes have no API token and no route to
 * the API server. Values leave this module only as `SecretValue` (printing `[secret]`).
 */
export class TenantSecrets {
  private readonly timeoutMs: number;
  private readonly cacheMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, { at: number; read: Promise<Map<string, StoredSecret>> }>();

  constructor(private readonly o: TenantSecretsOptions) {
    this.timeoutMs = o.timeoutMs ?? 5_000;
    this.cacheMs = o.cacheMs ?? 2_000;
    this.now = o.now ?? Date.now;
  }

  async list(tenant: string): Promise<Result<SecretInfo[]>> {
    const s = await this.read(tenant);
    if (!s.ok) return s;
    const b = bindingsOf(s.value);
    return ok(
      Object.keys(b)
        .sort()
        .map((n) => info(n, b[n] as Binding)),
    );
  }

  /** Creates or replaces one secret (a CAS on the tenant's Secret, retried on a concurrent write). */
  async put(tenant: string, name: string, req: SecretPutRequest): Promise<Result<SecretInfo>> {
    const binding: Binding = {
      hosts: req.hosts,
      ...(req.header !== undefined ? { header: req.header } : {}),
      ...(req.format !== undefined ? { format: req.format } : {}),
      updatedAt: new Date(this.now()).toISOString(),
    };
    const r = await this.change(tenant, (bindings, data) => {
      if (!(name in bindings) && Object.keys(bindings).length >= this.o.maxPerTenant)
        return new AppError("secret_limit", `a tenant stores at most ${this.o.maxPerTenant} secrets`);
      bindings[name] = binding;
      data[name] = Buffer.from(req.value, "utf8").toString("base64");
      return undefined;
    });
    return r.ok ? ok(info(name, binding)) : r;
  }

  async delete(tenant: string, name: string): Promise<Result<void>> {
    return this.change(tenant, (bindings, data) => {
      if (!(name in bindings)) return missing(name);
      delete bindings[name];
      delete data[name];
      return undefined;
    });
  }

  /**
   * The tenant's secrets with their values, for the egress proxy (cached `cacheMs`). A store that
   * does not answer yields none: the placeholder then goes out as it is, never a stale value.
   */
  values(tenant: string): Promise<Map<string, StoredSecret>> {
    const hit = this.cache.get(tenant);
    if (hit && this.now() - hit.at < this.cacheMs) return hit.read;
    const read = this.read(tenant).then((s) => {
      const out = new Map<string, StoredSecret>();
      if (!s.ok) {
        this.cache.delete(tenant);
        return out;
      }
      const bindings = bindingsOf(s.value);
      for (const [name, b] of Object.entries(bindings)) {
        const raw = s.value?.data?.[name];
        if (raw === undefined) continue;
        try {
          out.set(name, { name, ...b, value: new SecretValue(Buffer.from(raw, "base64").toString("utf8")) });
        } catch {
          // A value that cannot go into a header is not used (it was refused on the way in).
        }
      }
      return out;
    });
    this.cache.set(tenant, { at: this.now(), read });
    return read;
  }

  /** Which of `names` the tenant has (a sandbox may only opt in to secrets that exist). */
  async missing(tenant: string, names: readonly string[]): Promise<Result<string[]>> {
    if (names.length === 0) return ok([]);
    const s = await this.read(tenant);
    if (!s.ok) return s;
    const b = bindingsOf(s.value);
    return ok(names.filter((n) => !(n in b)));
  }

  private async read(tenant: string): Promise<Result<V1Secret | undefined>> {
    try {
      const s = await this.o.clients.core.readNamespacedSecret(
        { name: tenantSecretName(tenant), namespace: this.o.namespace },
        deadline(this.timeoutMs),
      );
      // A hash collision (or a hand-made object) is not this tenant's: nothing to show or use.
      return ok(s.metadata?.annotations?.[TENANT_ANNOTATION] === tenant ? s : undefined);
    } catch (e) {
      return isNotFound(k8sFailure(e)) ? ok(undefined) : err(unavailable(e));
    }
  }

  private async change(
    tenant: string,
    edit: (bindings: Record<string, Binding>, data: Record<string, string>) => AppError | undefined,
  ): Promise<Result<void>> {
    const name = tenantSecretName(tenant);
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.read(tenant);
      if (!current.ok) return current;
      const bindings = bindingsOf(current.value);
      const data = { ...(current.value?.data ?? {}) };
      const refused = edit(bindings, data);
      if (refused) return err(refused);
      const body: V1Secret = {
        apiVersion: "v1",
        kind: "Secret",
        type: "Opaque",
        metadata: {
          name,
          namespace: this.o.namespace,
          labels: LABELS,
          annotations: { [TENANT_ANNOTATION]: tenant, [BINDINGS_ANNOTATION]: JSON.stringify(bindings) },
          ...(current.value?.metadata?.resourceVersion
            ? { resourceVersion: current.value.metadata.resourceVersion }
            : {}),
        },
        data,
      };
      try {
        if (current.value)
          await this.o.clients.core.replaceNamespacedSecret(
            { name, namespace: this.o.namespace, body },
            deadline(this.timeoutMs),
          );
        else
          await this.o.clients.core.createNamespacedSecret(
            { namespace: this.o.namespace, body },
            deadline(this.timeoutMs),
          );
        this.cache.delete(tenant);
        return ok(undefined);
      } catch (e) {
        const f = k8sFailure(e);
        // Another write landed first (or created it): read again and redo the edit on that.
        if (!isConflict(f)) return err(unavailable(e));
      }
    }
    return err(
      new AppError("agent_unavailable", "the tenant's secrets are being changed concurrently; try again"),
    );
  }
}

import { randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import type { V1Pod } from "@kubernetes/client-node";
import { z } from "zod";
import baseTemplate from "../../k8s/base/sandbox-pod-template.json" with { type: "json" };
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { POOL_LABELS } from "../pool-state/labels.ts";

/** The env var the exec server reads its token from: this pod's own token, never the pool token. */
export const EXEC_TOKEN_ENV = "POOL_TOKEN";

/**
 * What pydantic-ai-backends' KubernetesPodSandbox puts into a pod whose server speaks its http
 * contract (EXEC_MODE=pydantic-http): the token its server checks in `X-Sandbox-Token`, and the
 * port it listens on — the agent dials 8080, the port of every sandbox exec server.
 */
export const CONTRACT_ENV = { token: "SANDBOX_EXEC_TOKEN", port: "SANDBOX_PORT", portValue: "8080" } as const;

export interface PodTemplateOptions {
  namespace: string;
  /** The pod's name, chosen by the controller (`podName`) because its exec token is bound to it. */
  name: string;
  /** This pod's exec token (cluster-agent/exec/pod-token.ts), put into the container env as a plain value. */
  execToken: string;
  image: string;
  runtimeClassName?: string | undefined;
  /** Which server reads the token: ours (default) or one written to pydantic-ai-backends' contract. */
  execMode?: "http" | "api" | "pydantic-http";
  /** Path of a JSON Pod to use instead of k8s/base/sandbox-pod-template.json (SANDBOX_POD_TEMPLATE). */
  templatePath?: string | undefined;
}

/** Just enough shape to fill in; the API server validates the rest. */
const TemplateShape = z.looseObject({
  metadata: z.looseObject({}).optional(),
  spec: z.looseObject({ containers: z.array(z.looseObject({ name: z.string() })).min(1) }),
});

export function loadPodTemplate(path: string | undefined): Result<V1Pod> {
  let raw: unknown = baseTemplate;
  if (path) {
    try {
      raw = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      return err(
        new AppError("invalid_request", `cannot read SANDBOX_POD_TEMPLATE ${path}: ${(e as Error).message}`),
      );
    }
  }
  const parsed = TemplateShape.safeParse(raw);
  if (!parsed.success)
    return err(new AppError("invalid_request", `invalid sandbox pod template: ${parsed.error.message}`));
  return ok(structuredClone(parsed.data) as V1Pod);
}

// What Kubernetes' generateName uses (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0/1/3.
const NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

/** A fresh name like generateName would give: the template's prefix (default `sandbox-`) + 5 random chars. */
export function podName(template: V1Pod): string {
  let suffix = "";
  for (let i = 0; i < 5; i++) suffix += NAME_ALPHABET[randomInt(NAME_ALPHABET.length)];
  return `${template.metadata?.generateName ?? "sandbox-"}${suffix}`;
}

/**
 * The Pod the controller creates: the template with name, namespace, image (first container), pool
 * labels and the pod's own exec token filled in. The name is set here, not by generateName: the
 * token is bound to it, so it must be known before the pod exists (a 409 means pick another).
 * Any `POOL_TOKEN` entry in the template (e.g. an old secretKeyRef) is replaced; with
 * EXEC_MODE=pydantic-http, `SANDBOX_EXEC_TOKEN` and `SANDBOX_PORT` instead.
 */
export function buildSandboxPod(template: V1Pod, opts: PodTemplateOptions): V1Pod {
  const pod = structuredClone(template);
  const meta = pod.metadata ?? {};
  pod.apiVersion = "v1";
  pod.kind = "Pod";
  const { generateName: _unused, ...rest } = meta;
  pod.metadata = {
    ...rest,
    name: opts.name,
    namespace: opts.namespace,
    labels: { ...(meta.labels ?? {}), ...POOL_LABELS },
  };
  if (!pod.spec) throw new Error("sandbox pod template has no spec");
  const first = pod.spec.containers[0];
  if (first) {
    first.image = opts.image;
    const ours =
      opts.execMode === "pydantic-http"
        ? [
            { name: CONTRACT_ENV.token, value: opts.execToken },
            { name: CONTRACT_ENV.port, value: CONTRACT_ENV.portValue },
          ]
        : [{ name: EXEC_TOKEN_ENV, value: opts.execToken }];
    const names = new Set(ours.map((e) => e.name));
    first.env = [...ours, ...(first.env ?? []).filter((e) => !names.has(e.name))];
  }
  if (opts.runtimeClassName) pod.spec.runtimeClassName = opts.runtimeClassName;
  return pod;
}

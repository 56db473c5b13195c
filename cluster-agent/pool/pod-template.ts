import { readFileSync } from "node:fs";
import type { V1Pod } from "@kubernetes/client-node";
import { z } from "zod";
import baseTemplate from "../../k8s/base/sandbox-pod-template.json" with { type: "json" };
import { AppError, err, ok, type Result } from "../../shared/errors.ts";
import { POOL_LABELS } from "./labels.ts";

export interface PodTemplateOptions {
  namespace: string;
  image: string;
  runtimeClassName?: string | undefined;
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

/**
 * The Pod the controller creates: the template with namespace, image (first container) and pool
 * labels filled in; always `generateName` so replicas never fight over names.
 */
export function buildSandboxPod(template: V1Pod, opts: PodTemplateOptions): V1Pod {
  const pod = structuredClone(template);
  const meta = pod.metadata ?? {};
  pod.apiVersion = "v1";
  pod.kind = "Pod";
  pod.metadata = {
    ...meta,
    name: undefined,
    generateName: meta.generateName ?? "sandbox-",
    namespace: opts.namespace,
    labels: { ...(meta.labels ?? {}), ...POOL_LABELS },
  };
  if (!pod.spec) throw new Error("sandbox pod template has no spec");
  const first = pod.spec.containers[0];
  if (first) first.image = opts.image;
  if (opts.runtimeClassName) pod.spec.runtimeClassName = opts.runtimeClassName;
  return pod;
}

import type { V1Container, V1Pod } from "@kubernetes/client-node";

export type SecretReader = (namespace: string, name: string) => Promise<Record<string, string> | undefined>;

export type EnvResult = { ok: true; env: Record<string, string> } | { ok: false; message: string };

/**
 * The container's environment as the kubelet computes it: literal values (with `$(VAR)`
 * expansion of earlier variables), secretKeyRef read through the API, and the fieldRefs the
 * downward API supports here. A missing secret or key is an error unless `optional`, as on a real node
 * (the container then waits with reason CreateContainerConfigError).
 */
export async function resolveEnv(
  pod: V1Pod,
  container: V1Container,
  podIP: string,
  hostIP: string,
  readSecret: SecretReader,
): Promise<EnvResult> {
  const ns = pod.metadata?.namespace ?? "default";
  const env: Record<string, string> = {};
  const secrets = new Map<string, Record<string, string> | undefined>();
  for (const e of container.env ?? []) {
    if (e.value !== undefined) {
      env[e.name] = expand(e.value, env);
      continue;
    }
    const from = e.valueFrom;
    if (!from) {
      env[e.name] = "";
      continue;
    }
    if (from.secretKeyRef) {
      const { name, key, optional } = from.secretKeyRef;
      if (!name) return { ok: false, message: `secretKeyRef for ${e.name} has no name` };
      if (!secrets.has(name)) secrets.set(name, await readSecret(ns, name));
      const data = secrets.get(name);
      if (!data) {
        if (optional) continue;
        return { ok: false, message: `secret "${name}" not found` };
      }
      const v = data[key];
      if (v === undefined) {
        if (optional) continue;
        return { ok: false, message: `couldn't find key ${key} in Secret ${ns}/${name}` };
      }
      env[e.name] = v;
      continue;
    }
    if (from.fieldRef) {
      const v = fieldValue(pod, from.fieldRef.fieldPath, podIP, hostIP);
      if (v === undefined) return { ok: false, message: `unsupported fieldRef ${from.fieldRef.fieldPath}` };
      env[e.name] = v;
      continue;
    }
    return {
      ok: false,
      message: `unsupported valueFrom for ${e.name} (devcluster supports secretKeyRef and fieldRef)`,
    };
  }
  return { ok: true, env };
}

function fieldValue(pod: V1Pod, path: string, podIP: string, hostIP: string): string | undefined {
  switch (path) {
    case "status.podIP":
      return podIP;
    case "status.podIPs":
      return podIP;
    case "status.hostIP":
      return hostIP;
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "default";
  }
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (label?.[1] !== undefined) return pod.metadata?.labels?.[label[1]] ?? "";
  const ann = /^metadata\.annotations\['(.+)'\]$/.exec(path);
  if (ann?.[1] !== undefined) return pod.metadata?.annotations?.[ann[1]] ?? "";
  return undefined;
}

/** `$(VAR)` → an earlier variable's value; `$$(VAR)` → literal `$(VAR)`; unknown refs stay as written. */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) => {
    if (m === "$$") return "$";
    return name !== undefined && env[name] !== undefined ? env[name] : m;
  });
}

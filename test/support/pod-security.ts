import type { V1Container, V1PodSpec, V1SecurityContext } from "@kubernetes/client-node";

/**
 * The Pod Security Standards "baseline" + "restricted" checks (kubernetes.io/docs/concepts/
 * security/pod-security-standards, policy version latest), written from the spec so a test can
 * hold any pod spec to them offline. Each violation names the check and the field.
 */
export function restrictedViolations(spec: V1PodSpec, annotations: Record<string, string> = {}): string[] {
  const v: string[] = [];
  const containers: Array<[string, V1Container]> = [
    ...spec.containers.map((c) => [`containers[${c.name}]`, c] as [string, V1Container]),
    ...(spec.initContainers ?? []).map((c) => [`initContainers[${c.name}]`, c] as [string, V1Container]),
    ...(spec.ephemeralContainers ?? []).map(
      (c) => [`ephemeralContainers[${c.name}]`, c as V1Container] as [string, V1Container],
    ),
  ];
  const psc = spec.securityContext ?? {};
  const each = (f: (where: string, sc: V1SecurityContext, c: V1Container) => void) => {
    for (const [where, c] of containers) f(where, c.securityContext ?? {}, c);
  };

  // --- baseline ---
  if (psc.windowsOptions?.hostProcess) v.push("hostProcess: spec.securityContext.windowsOptions.hostProcess");
  each((w, sc) => {
    if (sc.windowsOptions?.hostProcess)
      v.push(`hostProcess: ${w}.securityContext.windowsOptions.hostProcess`);
  });
  if (spec.hostNetwork) v.push("host namespaces: spec.hostNetwork");
  if (spec.hostPID) v.push("host namespaces: spec.hostPID");
  if (spec.hostIPC) v.push("host namespaces: spec.hostIPC");
  each((w, sc) => {
    if (sc.privileged) v.push(`privileged: ${w}.securityContext.privileged`);
  });
  for (const vol of spec.volumes ?? []) if (vol.hostPath) v.push(`hostPath volume: ${vol.name}`);
  each((w, _sc, c) => {
    for (const p of c.ports ?? [])
      if (p.hostPort) v.push(`host ports: ${w}.ports[${p.containerPort}].hostPort`);
  });
  for (const [k, val] of Object.entries(annotations)) {
    if (
      k.startsWith("container.apparmor.security.beta.kubernetes.io/") &&
      val !== "runtime/default" &&
      !val.startsWith("localhost/")
    )
      v.push(`AppArmor: annotation ${k}=${val}`);
  }
  const appArmorOk = (t: string | undefined) =>
    t === undefined || t === "RuntimeDefault" || t === "Localhost";
  if (!appArmorOk(psc.appArmorProfile?.type)) v.push("AppArmor: spec.securityContext.appArmorProfile");
  each((w, sc) => {
    if (!appArmorOk(sc.appArmorProfile?.type)) v.push(`AppArmor: ${w}.securityContext.appArmorProfile`);
  });
  const seLinuxTypes = new Set([
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
  ]);
  const seLinuxBad = (o: V1SecurityContext["seLinuxOptions"]) =>
    o !== undefined &&
    ((o.type !== undefined && !seLinuxTypes.has(o.type)) || Boolean(o.user) || Boolean(o.role));
  if (seLinuxBad(psc.seLinuxOptions)) v.push("SELinux: spec.securityContext.seLinuxOptions");
  each((w, sc) => {
    if (seLinuxBad(sc.seLinuxOptions)) v.push(`SELinux: ${w}.securityContext.seLinuxOptions`);
  });
  each((w, sc) => {
    if (sc.procMount !== undefined && sc.procMount !== "Default")
      v.push(`procMount: ${w}.securityContext.procMount`);
  });
  const safeSysctls = new Set([
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
  ]);
  for (const s of psc.sysctls ?? []) if (!safeSysctls.has(s.name)) v.push(`sysctls: ${s.name}`);

  // --- restricted ---
  const allowedVolumes = new Set([
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
  ]);
  for (const vol of spec.volumes ?? []) {
    for (const key of Object.keys(vol)) {
      if (key !== "name" && !allowedVolumes.has(key)) v.push(`volume types: ${vol.name} is ${key}`);
    }
  }
  each((w, sc) => {
    if (sc.allowPrivilegeEscalation !== false) v.push(`privilege escalation: ${w}.allowPrivilegeEscalation`);
  });
  each((w, sc) => {
    if (sc.runAsNonRoot === false) v.push(`runAsNonRoot: ${w}.securityContext.runAsNonRoot is false`);
    else if (sc.runAsNonRoot !== true && psc.runAsNonRoot !== true)
      v.push(`runAsNonRoot: neither the pod nor ${w} sets it`);
  });
  if (psc.runAsUser === 0) v.push("runAsUser: spec.securityContext.runAsUser is 0");
  each((w, sc) => {
    if (sc.runAsUser === 0) v.push(`runAsUser: ${w}.securityContext.runAsUser is 0`);
  });
  const seccompOk = (t: string | undefined) => t === "RuntimeDefault" || t === "Localhost";
  if (psc.seccompProfile?.type !== undefined && !seccompOk(psc.seccompProfile.type))
    v.push(`seccomp: spec.securityContext.seccompProfile is ${psc.seccompProfile.type}`);
  each((w, sc) => {
    const t = sc.seccompProfile?.type;
    if (t !== undefined && !seccompOk(t)) v.push(`seccomp: ${w}.seccompProfile is ${t}`);
    else if (t === undefined && !seccompOk(psc.seccompProfile?.type))
      v.push(`seccomp: neither the pod nor ${w} sets RuntimeDefault/Localhost`);
  });
  each((w, sc) => {
    if (!sc.capabilities?.drop?.includes("ALL")) v.push(`capabilities: ${w} does not drop ALL`);
    for (const cap of sc.capabilities?.add ?? [])
      if (cap !== "NET_BIND_SERVICE") v.push(`capabilities: ${w} adds ${cap}`);
  });
  return v;
}

/** What this project asks beyond "restricted" of a sandbox pod (docs/architecture.md §4). */
export function sandboxExtrasViolations(spec: V1PodSpec): string[] {
  const v: string[] = [];
  if (spec.automountServiceAccountToken !== false) v.push("automountServiceAccountToken is not false");
  if (spec.enableServiceLinks !== false) v.push("enableServiceLinks is not false");
  for (const c of spec.containers) {
    if (c.securityContext?.readOnlyRootFilesystem !== true) v.push(`${c.name}: root filesystem is writable`);
    for (const r of ["cpu", "memory", "ephemeral-storage"]) {
      if (!c.resources?.limits?.[r]) v.push(`${c.name}: no ${r} limit`);
      if (!c.resources?.requests?.[r]) v.push(`${c.name}: no ${r} request`);
    }
  }
  for (const vol of spec.volumes ?? []) {
    if (!vol.emptyDir) v.push(`volume ${vol.name} is not an emptyDir`);
    else if (!vol.emptyDir.sizeLimit) v.push(`emptyDir ${vol.name} has no sizeLimit`);
  }
  return v;
}

import { OBJECT_META, type Schema } from "../decode.ts";
import type { Cause } from "../status.ts";
import { isObject, type Json, type JsonObject } from "../types.ts";
import { dnsLabelErrors, field, isValidIP } from "../validation.ts";
import { deepEqual, type Kind, metaFields, specOf, str } from "./kind.ts";

const CONTAINER_STATE: Schema = {
  go: "ContainerState",
  fields: {
    waiting: "any",
    running: { go: "ContainerStateRunning", fields: { startedAt: "time" } },
    terminated: {
      go: "ContainerStateTerminated",
      fields: {
        exitCode: "int32",
        signal: "int32",
        reason: "string",
        message: "string",
        startedAt: "time",
        finishedAt: "time",
        containerID: "string",
      },
    },
  },
};

const CONTAINER_STATUS: Schema = {
  go: "ContainerStatus",
  fields: {
    name: "string",
    state: CONTAINER_STATE,
    lastState: CONTAINER_STATE,
    ready: "bool",
    restartCount: "int32",
    image: "string",
    imageID: "string",
    containerID: "string",
    started: "bool",
    allocatedResources: "any",
    allocatedResourcesStatus: "any",
    resources: "any",
    user: "any",
    volumeMounts: "any",
    stopSignal: "any",
  },
};

const POD_SCHEMA: Schema = {
  go: "Pod",
  fields: {
    apiVersion: "string",
    kind: "string",
    metadata: OBJECT_META,
    spec: "any",
    status: {
      go: "PodStatus",
      fields: {
        observedGeneration: "int64",
        phase: "string",
        conditions: {
          items: {
            go: "PodCondition",
            fields: {
              observedGeneration: "int64",
              type: "string",
              status: "string",
              lastProbeTime: "time",
              lastTransitionTime: "time",
              reason: "string",
              message: "string",
            },
          },
        },
        message: "string",
        reason: "string",
        nominatedNodeName: "string",
        hostIP: "string",
        hostIPs: "any",
        podIP: "string",
        podIPs: { items: { go: "PodIP", fields: { ip: "string" } } },
        startTime: "time",
        initContainerStatuses: { items: CONTAINER_STATUS },
        containerStatuses: { items: CONTAINER_STATUS },
        ephemeralContainerStatuses: { items: CONTAINER_STATUS },
        qosClass: "string",
        resize: "string",
        resourceClaimStatuses: "any",
      },
    },
  },
};

const MUTABLE_MESSAGE =
  "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

function objs(v: Json | undefined): JsonObject[] {
  return Array.isArray(v) ? v.filter(isObject) : [];
}

function defaultProbe(p: Json | undefined): void {
  if (!isObject(p)) return;
  p.timeoutSeconds ??= 1;
  p.periodSeconds ??= 10;
  p.successThreshold ??= 1;
  p.failureThreshold ??= 3;
  if (isObject(p.httpGet)) p.httpGet.scheme ??= "HTTP";
}

function defaultContainer(c: JsonObject): void {
  c.terminationMessagePath ??= "/dev/termination-log";
  c.terminationMessagePolicy ??= "File";
  const image = str(c.image) ?? "";
  const tagged = /:[^/]+$/.test(image.split("@")[0] ?? "") || image.includes("@");
  c.imagePullPolicy ??= !tagged || image.endsWith(":latest") ? "Always" : "IfNotPresent";
  if (!isObject(c.resources)) c.resources = {};
  const res = c.resources as JsonObject;
  if (isObject(res.limits)) {
    const req: JsonObject = isObject(res.requests) ? res.requests : {};
    for (const [k, v] of Object.entries(res.limits)) req[k] ??= v;
    res.requests = req;
  }
  for (const p of objs(c.ports)) p.protocol ??= "TCP";
  defaultProbe(c.readinessProbe);
  defaultProbe(c.livenessProbe);
  defaultProbe(c.startupProbe);
  for (const e of objs(c.env)) {
    if (isObject(e.valueFrom) && isObject(e.valueFrom.fieldRef)) e.valueFrom.fieldRef.apiVersion ??= "v1";
  }
}

/** The defaults the real apiserver (and its default admission plugins) apply to a pod spec. */
function defaultSpec(spec: JsonObject): void {
  spec.restartPolicy ??= "Always";
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= "ClusterFirst";
  spec.securityContext ??= {};
  spec.schedulerName ??= "default-scheduler";
  spec.enableServiceLinks ??= true;
  spec.priority ??= 0;
  spec.preemptionPolicy ??= "PreemptLowerPriority";
  for (const c of objs(spec.containers)) defaultContainer(c);
  for (const c of objs(spec.initContainers)) defaultContainer(c);
}

function qosClass(spec: JsonObject): string {
  const containers = [...objs(spec.containers), ...objs(spec.initContainers)];
  let any = false;
  let guaranteed = containers.length > 0;
  for (const c of containers) {
    const r = isObject(c.resources) ? c.resources : {};
    const req = isObject(r.requests) ? r.requests : {};
    const lim = isObject(r.limits) ? r.limits : {};
    if (Object.keys(req).length > 0 || Object.keys(lim).length > 0) any = true;
    for (const res of ["cpu", "memory"]) {
      if (lim[res] === undefined || String(req[res]) !== String(lim[res])) guaranteed = false;
    }
  }
  if (guaranteed) return "Guaranteed";
  return any ? "Burstable" : "BestEffort";
}

function syncPodIPs(status: JsonObject): void {
  const ips = objs(status.podIPs);
  if (typeof status.podIP === "string" && status.podIP !== "" && ips.length === 0) {
    status.podIPs = [{ ip: status.podIP }];
  } else if (
    (status.podIP === undefined || status.podIP === "") &&
    ips.length > 0 &&
    typeof ips[0]?.ip === "string"
  ) {
    status.podIP = ips[0].ip;
  }
}

function validateContainers(
  list: JsonObject[],
  path: string,
  volumes: Set<string>,
  names: Set<string>,
): Cause[] {
  const errs: Cause[] = [];
  list.forEach((c, i) => {
    const p = `${path}[${i}]`;
    const name = c.name;
    if (typeof name !== "string" || name === "") errs.push(field.required(`${p}.name`, ""));
    else {
      for (const e of dnsLabelErrors(name)) errs.push(field.invalid(`${p}.name`, name, e));
      if (names.has(name)) errs.push(field.duplicate(`${p}.name`, name));
      names.add(name);
    }
    if (typeof c.image !== "string" || c.image.trim() === "") errs.push(field.required(`${p}.image`, ""));
    objs(c.volumeMounts).forEach((m, j) => {
      if (typeof m.name === "string" && !volumes.has(m.name)) {
        errs.push({
          reason: "FieldValueNotFound",
          message: `Not found: ${JSON.stringify(m.name)}`,
          field: `${p}.volumeMounts[${j}].name`,
        });
      }
      if (typeof m.mountPath !== "string" || m.mountPath === "") {
        errs.push(field.required(`${p}.volumeMounts[${j}].mountPath`, ""));
      }
    });
  });
  return errs;
}

function validatePodSpec(spec: JsonObject): Cause[] {
  const errs: Cause[] = [];
  const volumes = new Set<string>();
  objs(spec.volumes).forEach((v, i) => {
    const name = v.name;
    if (typeof name !== "string" || name === "") errs.push(field.required(`spec.volumes[${i}].name`, ""));
    else {
      for (const e of dnsLabelErrors(name)) errs.push(field.invalid(`spec.volumes[${i}].name`, name, e));
      if (volumes.has(name)) errs.push(field.duplicate(`spec.volumes[${i}].name`, name));
      volumes.add(name);
    }
  });
  const containers = objs(spec.containers);
  if (containers.length === 0) errs.push(field.required("spec.containers", ""));
  const names = new Set<string>();
  errs.push(...validateContainers(containers, "spec.containers", volumes, names));
  errs.push(...validateContainers(objs(spec.initContainers), "spec.initContainers", volumes, names));
  const rp = spec.restartPolicy;
  if (typeof rp !== "string" || !["Always", "OnFailure", "Never"].includes(rp)) {
    errs.push(field.notSupported("spec.restartPolicy", rp ?? null, ["Always", "OnFailure", "Never"]));
  }
  const tg = spec.terminationGracePeriodSeconds;
  if (tg !== undefined && typeof tg !== "number")
    errs.push(field.invalid("spec.terminationGracePeriodSeconds", tg, "must be an integer"));
  return errs;
}

function validateStatus(status: JsonObject): Cause[] {
  const errs: Cause[] = [];
  objs(status.podIPs).forEach((p, i) => {
    const ip = str(p.ip) ?? "";
    if (!isValidIP(ip)) {
      errs.push(
        field.invalid(
          `status.podIPs[${i}]`,
          ip,
          "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
      );
    }
  });
  const first = objs(status.podIPs)[0];
  if (first && typeof status.podIP === "string" && status.podIP !== first.ip) {
    errs.push(field.invalid("status.podIP", status.podIP, "must match status.podIPs[0].ip"));
  }
  if (typeof status.hostIP === "string" && status.hostIP !== "" && !isValidIP(status.hostIP)) {
    errs.push(
      field.invalid(
        "status.hostIP",
        status.hostIP,
        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
      ),
    );
  }
  objs(status.conditions).forEach((c, i) => {
    if (typeof c.type !== "string" || c.type === "")
      errs.push(field.required(`status.conditions[${i}].type`, "must be specified"));
  });
  return errs;
}

/** Spec fields a pod update may change; everything else is immutable once created. */
function withMutableFrom(spec: JsonObject, old: JsonObject): JsonObject {
  const s = structuredClone(spec);
  const oldC = objs(old.containers);
  objs(s.containers).forEach((c, i) => {
    const o = oldC[i];
    if (o) c.image = o.image ?? null;
  });
  const oldI = objs(old.initContainers);
  objs(s.initContainers).forEach((c, i) => {
    const o = oldI[i];
    if (o) c.image = o.image ?? null;
  });
  if (old.activeDeadlineSeconds === undefined) delete s.activeDeadlineSeconds;
  else s.activeDeadlineSeconds = old.activeDeadlineSeconds;
  const oldTol = Array.isArray(old.tolerations) ? old.tolerations : [];
  const newTol = Array.isArray(s.tolerations) ? s.tolerations : [];
  if (oldTol.every((t) => newTol.some((n) => deepEqual(n, t)))) {
    if (old.tolerations === undefined) delete s.tolerations;
    else s.tolerations = old.tolerations;
  }
  const otg = old.terminationGracePeriodSeconds;
  if (typeof otg === "number" && otg < 0 && s.terminationGracePeriodSeconds === 1)
    s.terminationGracePeriodSeconds = otg;
  return s;
}

export const podKind: Kind = {
  group: "",
  version: "v1",
  resource: "pods",
  kind: "Pod",
  listKind: "PodList",
  singular: "pod",
  shortNames: ["po"],
  namespaced: true,
  nameRule: "subdomain",
  schema: POD_SCHEMA,
  subresources: ["status", "binding", "exec", "log"],
  fieldLabels: [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
  ],
  fields(obj) {
    const spec = (obj.spec ?? {}) as JsonObject;
    const status = (obj.status ?? {}) as JsonObject;
    const ips = objs(status.podIPs);
    return {
      ...metaFields(obj),
      "spec.nodeName": str(spec.nodeName),
      "spec.restartPolicy": str(spec.restartPolicy),
      "spec.schedulerName": str(spec.schedulerName),
      "spec.serviceAccountName": str(spec.serviceAccountName),
      "spec.hostNetwork": spec.hostNetwork === true ? "true" : "false",
      "status.phase": str(status.phase),
      "status.podIP": str(status.podIP),
      "status.podIPs": str(ips[0]?.ip),
      "status.nominatedNodeName": str(status.nominatedNodeName),
    };
  },
  allowUnconditionalUpdate: true,
  returnDeletedObject: true,
  prepareForCreate(obj) {
    const spec = specOf(obj);
    defaultSpec(spec);
    obj.status = { phase: "Pending", qosClass: qosClass(spec) };
  },
  prepareForUpdate(obj, old) {
    defaultSpec(specOf(obj));
    if (old.status === undefined) delete obj.status;
    else obj.status = structuredClone(old.status);
  },
  prepareForStatusUpdate(obj, old) {
    obj.spec = structuredClone(old.spec ?? {});
    const meta = obj.metadata as JsonObject;
    const oldMeta = old.metadata as JsonObject;
    if (oldMeta.ownerReferences === undefined) delete meta.ownerReferences;
    else meta.ownerReferences = oldMeta.ownerReferences;
    if (isObject(obj.status)) syncPodIPs(obj.status);
  },
  validate(obj) {
    return validatePodSpec(specOf(obj));
  },
  validateUpdate(obj, old) {
    const spec = specOf(obj);
    const oldSpec = (old.spec ?? {}) as JsonObject;
    const errs = validatePodSpec(spec);
    if (objs(spec.containers).length !== objs(oldSpec.containers).length) {
      return [...errs, field.forbidden("spec.containers", "pod updates may not add or remove containers")];
    }
    if (!deepEqual(withMutableFrom(spec, oldSpec), oldSpec)) {
      const changed = Object.keys({ ...spec, ...oldSpec })
        .filter((k) => !deepEqual(withMutableFrom(spec, oldSpec)[k], oldSpec[k]))
        .sort();
      errs.push(
        field.forbidden("spec", `${MUTABLE_MESSAGE}\n  core.PodSpec{ changed: ${changed.join(", ")} }`),
      );
    }
    return errs;
  },
  validateStatusUpdate(obj) {
    return validateStatus(isObject(obj.status) ? obj.status : {});
  },
  gracePeriod(obj, requested) {
    const spec = (obj.spec ?? {}) as JsonObject;
    const status = (obj.status ?? {}) as JsonObject;
    let period =
      requested ??
      (typeof spec.terminationGracePeriodSeconds === "number" ? spec.terminationGracePeriodSeconds : 0);
    if (typeof spec.nodeName !== "string" || spec.nodeName === "") period = 0;
    if (status.phase === "Failed" || status.phase === "Succeeded") period = 0;
    if (period < 0) period = 1;
    return period;
  },
  specChanged(obj, old) {
    return !deepEqual(obj.spec, old.spec);
  },
};

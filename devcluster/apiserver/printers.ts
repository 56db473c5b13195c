import type { Kind } from "./kinds/index.ts";
import { resourceId } from "./kinds/kind.ts";
import { isObject, type Json, type JsonObject } from "./types.ts";

/**
 * The columns and cells kube-apiserver's printers (pkg/printers/internalversion/printers.go) give
 * each kind devcluster serves. The server always prints the wide form (priority 1 columns
 * included); kubectl hides priority > 0 columns unless `-o wide`.
 */
export interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface Printer {
  columns: Column[];
  cells(obj: JsonObject, now: number): Json[];
  /** Row conditions (pods that finished carry `Completed`). */
  conditions?(obj: JsonObject): JsonObject[] | undefined;
}

const NAME_DOC =
  "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC =
  "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

function col(name: string, description: string, priority = 0, format = "", type = "string"): Column {
  return { name, type, format, description, priority };
}

const NAME = col("Name", NAME_DOC, 0, "name");
const AGE = col("Age", CREATED_DOC);

function obj(v: Json | undefined): JsonObject {
  return isObject(v) ? v : {};
}

function list(v: Json | undefined): JsonObject[] {
  return Array.isArray(v) ? v.filter(isObject) : [];
}

function s(v: Json | undefined): string {
  return typeof v === "string" ? v : "";
}

function orNone(v: string): string {
  return v === "" ? "<none>" : v;
}

/** apimachinery's duration.HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.trunc(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.trunc(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${hours / 24}d` : `${Math.trunc(hours / 24)}d${hours % 24}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 365 * 2) return `${days}d`;
  if (hours < 24 * 365 * 8) {
    const dy = days % 365;
    return dy === 0 ? `${Math.trunc(days / 365)}y` : `${Math.trunc(days / 365)}y${dy}d`;
  }
  return `${Math.trunc(days / 365)}y`;
}

/** translateTimestampSince: `<unknown>` for a zero time. */
function since(t: Json | undefined, now: number): string {
  const ms = typeof t === "string" ? Date.parse(t) : Number.NaN;
  return Number.isNaN(ms) ? "<unknown>" : humanDuration(now - ms);
}

function age(o: JsonObject, now: number): string {
  return since(obj(o.metadata).creationTimestamp, now);
}

function nameOf(o: JsonObject): string {
  return s(obj(o.metadata).name);
}

const podPrinter: Printer = {
  columns: [
    NAME,
    col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "The aggregate status of the containers in this pod."),
    col(
      "Restarts",
      "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    col("IP", "podIP address allocated to the pod. Routable at least within the cluster.", 1),
    col("Node", "NodeName indicates in which node this pod is scheduled.", 1),
    col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
    col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
  ],
  cells(pod, now) {
    const spec = obj(pod.spec);
    const status = obj(pod.status);
    const meta = obj(pod.metadata);
    const phase = s(status.phase);
    let reason = s(status.reason) || phase;
    let restarts = 0;
    let ready = 0;
    let lastRestart = Number.NaN;
    const inits = list(status.initContainerStatuses);
    let initializing = false;
    for (const [i, c] of inits.entries()) {
      restarts += typeof c.restartCount === "number" ? c.restartCount : 0;
      const state = obj(c.state);
      const term = obj(state.terminated);
      if (isObject(state.terminated) && term.exitCode === 0) continue;
      initializing = true;
      if (isObject(state.terminated)) {
        reason = s(term.reason)
          ? `Init:${s(term.reason)}`
          : typeof term.signal === "number" && term.signal !== 0
            ? `Init:Signal:${term.signal}`
            : `Init:ExitCode:${String(term.exitCode ?? 0)}`;
      } else if (
        isObject(state.waiting) &&
        s(obj(state.waiting).reason) &&
        s(obj(state.waiting).reason) !== "PodInitializing"
      ) {
        reason = `Init:${s(obj(state.waiting).reason)}`;
      } else reason = `Init:${i}/${list(spec.initContainers).length}`;
      break;
    }
    if (!initializing) {
      restarts = 0;
      let hasRunning = false;
      const statuses = list(status.containerStatuses);
      for (let i = statuses.length - 1; i >= 0; i--) {
        const c = statuses[i] ?? {};
        restarts += typeof c.restartCount === "number" ? c.restartCount : 0;
        const last = obj(obj(c.lastState).terminated);
        if (typeof last.finishedAt === "string") {
          const t = Date.parse(last.finishedAt);
          if (Number.isNaN(lastRestart) || t > lastRestart) lastRestart = t;
        }
        const state = obj(c.state);
        const term = obj(state.terminated);
        if (s(obj(state.waiting).reason)) reason = s(obj(state.waiting).reason);
        else if (s(term.reason)) reason = s(term.reason);
        else if (isObject(state.terminated))
          reason =
            typeof term.signal === "number" && term.signal !== 0
              ? `Signal:${term.signal}`
              : `ExitCode:${String(term.exitCode ?? 0)}`;
        else if (c.ready === true && isObject(state.running)) {
          hasRunning = true;
          ready++;
        }
      }
      if (reason === "Completed" && hasRunning) {
        const podReady = list(status.conditions).some((c) => c.type === "Ready" && c.status === "True");
        reason = podReady ? "Running" : "NotReady";
      }
    }
    const terminal = phase === "Succeeded" || phase === "Failed";
    if (typeof meta.deletionTimestamp === "string") {
      if (s(status.reason) === "NodeLost") reason = "Unknown";
      else if (!terminal) reason = "Terminating";
    }
    const restartText =
      restarts !== 0 && !Number.isNaN(lastRestart)
        ? `${restarts} (${humanDuration(now - lastRestart)} ago)`
        : String(restarts);
    const gates = list(spec.readinessGates);
    const conds = list(status.conditions);
    const gatesText =
      gates.length === 0
        ? "<none>"
        : `${gates.filter((g) => conds.some((c) => c.type === g.conditionType && c.status === "True")).length}/${gates.length}`;
    return [
      nameOf(pod),
      `${ready}/${list(spec.containers).length}`,
      reason,
      restartText,
      age(pod, now),
      orNone(s(status.podIP)),
      orNone(s(spec.nodeName)),
      orNone(s(status.nominatedNodeName)),
      gatesText,
    ];
  },
  conditions(pod) {
    const phase = s(obj(pod.status).phase);
    if (phase !== "Succeeded" && phase !== "Failed") return undefined;
    return [{ type: "Completed", status: "True", reason: phase, message: "" }];
  },
};

const nodePrinter: Printer = {
  columns: [
    NAME,
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE,
    col("Version", "Kubelet Version reported by the node."),
    col("Internal-IP", "List of addresses reachable to the node.", 1),
    col("External-IP", "List of addresses reachable to the node.", 1),
    col(
      "OS-Image",
      "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
      1,
    ),
    col(
      "Kernel-Version",
      "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
      1,
    ),
    col(
      "Container-Runtime",
      "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
      1,
    ),
  ],
  cells(node, now) {
    const status = obj(node.status);
    const readyCond = list(status.conditions).find((c) => c.type === "Ready");
    const states: string[] = [];
    if (readyCond)
      states.push(
        readyCond.status === "True" ? "Ready" : readyCond.status === "False" ? "NotReady" : "Unknown",
      );
    if (states.length === 0) states.push("Unknown");
    if (obj(node.spec).unschedulable === true) states.push("SchedulingDisabled");
    const roles = new Set<string>();
    for (const [k, v] of Object.entries(obj(obj(node.metadata).labels))) {
      if (k.startsWith("node-role.kubernetes.io/")) roles.add(k.slice("node-role.kubernetes.io/".length));
      else if (k === "kubernetes.io/role" && typeof v === "string" && v !== "") roles.add(v);
    }
    const info = obj(status.nodeInfo);
    const address = (type: string) => orNone(s(list(status.addresses).find((a) => a.type === type)?.address));
    const unknown = (v: string) => (v === "" ? "<unknown>" : v);
    return [
      nameOf(node),
      states.join(","),
      roles.size === 0 ? "<none>" : [...roles].sort().join(","),
      age(node, now),
      s(info.kubeletVersion),
      address("InternalIP"),
      address("ExternalIP"),
      unknown(s(info.osImage)),
      unknown(s(info.kernelVersion)),
      unknown(s(info.containerRuntimeVersion)),
    ];
  },
};

const leasePrinter: Printer = {
  columns: [
    NAME,
    col("Holder", "holderIdentity contains the identity of the holder of a current lease."),
    AGE,
  ],
  cells: (lease, now) => [nameOf(lease), s(obj(lease.spec).holderIdentity), age(lease, now)],
};

const namespacePrinter: Printer = {
  columns: [NAME, col("Status", "The status of the namespace"), AGE],
  cells: (ns, now) => [nameOf(ns), s(obj(ns.status).phase), age(ns, now)],
};

const secretPrinter: Printer = {
  columns: [
    NAME,
    col("Type", "Used to facilitate programmatic handling of secret data."),
    col("Data", "The number of data items in the secret."),
    AGE,
  ],
  cells: (secret, now) => [
    nameOf(secret),
    s(secret.type),
    Object.keys(obj(secret.data)).length + Object.keys(obj(secret.stringData)).length,
    age(secret, now),
  ],
};

const eventPrinter: Printer = {
  columns: [
    col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
      "Reason",
      "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "The object that this event is about."),
    col(
      "Subobject",
      "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
      1,
    ),
    col("Source", "The component reporting this event. Should be a short machine understandable string.", 1),
    col("Message", "A human-readable description of the status of this operation."),
    col(
      "First Seen",
      "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
      1,
    ),
    col("Count", "The number of times this event has occurred.", 1),
    col("Name", NAME_DOC, 1, "name"),
  ],
  cells(ev, now) {
    const first =
      typeof ev.firstTimestamp === "string" ? since(ev.firstTimestamp, now) : since(ev.eventTime, now);
    let last = typeof ev.lastTimestamp === "string" ? since(ev.lastTimestamp, now) : first;
    let count = typeof ev.count === "number" ? ev.count : 0;
    if (isObject(ev.series)) {
      last = since(ev.series.lastObservedTime, now);
      count = typeof ev.series.count === "number" ? ev.series.count : 0;
    } else if (count === 0) count = 1;
    const involved = obj(ev.involvedObject);
    const kind = s(involved.kind).toLowerCase();
    const source = obj(ev.source);
    const component = s(source.component) || s(ev.reportingComponent);
    const instance = s(source.host) || s(ev.reportingInstance);
    return [
      last,
      s(ev.type),
      s(ev.reason),
      s(involved.name) ? `${kind}/${s(involved.name)}` : kind,
      s(involved.fieldPath),
      instance === "" ? component : `${component}, ${instance}`,
      s(ev.message).trim(),
      first,
      count,
      nameOf(ev),
    ];
  },
};

const PRINTERS: Record<string, Printer> = {
  "/pods": podPrinter,
  "/nodes": nodePrinter,
  "/namespaces": namespacePrinter,
  "/secrets": secretPrinter,
  "/events": eventPrinter,
  "coordination.k8s.io/leases": leasePrinter,
};

/** rest.NewDefaultTableConvertor: what the real server prints for a kind without its own printer. */
const defaultPrinter: Printer = {
  columns: [NAME, col("Created At", CREATED_DOC, 0, "", "date")],
  cells: (o) => [nameOf(o), obj(o.metadata).creationTimestamp ?? null],
};

export function printerFor(kind: Kind): Printer {
  return PRINTERS[resourceId(kind)] ?? defaultPrinter;
}

import { findKind, KINDS, type Kind } from "./kinds/index.ts";
import { groupVersion } from "./kinds/kind.ts";
import type { JsonObject } from "./types.ts";

export type Route =
  | { type: "resource"; kind: Kind; namespace?: string; name?: string; subresource?: string }
  | { type: "document"; body: JsonObject | string }
  | { type: "notfound" };

const GROUPS = [...new Set(KINDS.filter((k) => k.group !== "").map((k) => `${k.group}/${k.version}`))];

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

function resourceList(group: string, version: string): JsonObject | undefined {
  const kinds = KINDS.filter((k) => k.group === group && k.version === version);
  if (kinds.length === 0) return undefined;
  const resources: JsonObject[] = [];
  for (const k of kinds) {
    const r: JsonObject = {
      name: k.resource,
      singularName: k.singular,
      namespaced: k.namespaced,
      kind: k.kind,
      verbs: VERBS,
    };
    if (k.shortNames) r.shortNames = k.shortNames;
    resources.push(r);
    for (const sub of k.subresources) {
      const verbs =
        sub === "status"
          ? ["get", "patch", "update"]
          : sub === "binding"
            ? ["create"]
            : sub === "log"
              ? ["get"]
              : ["create", "get"];
      const kind = sub === "binding" ? "Binding" : sub === "exec" ? "PodExecOptions" : k.kind;
      resources.push({
        name: `${k.resource}/${sub}`,
        singularName: "",
        namespaced: k.namespaced,
        kind,
        verbs,
      });
    }
  }
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group === "" ? version : `${group}/${version}`,
    resources,
  };
}

function groupDoc(name: string): JsonObject | undefined {
  const versions = GROUPS.filter((g) => g.startsWith(`${name}/`)).map((gv) => ({
    groupVersion: gv,
    version: gv.split("/")[1] ?? "",
  }));
  const preferred = versions[0];
  if (!preferred) return undefined;
  return { kind: "APIGroup", apiVersion: "v1", name, versions, preferredVersion: preferred };
}

export function route(pathname: string, hostPort: string): Route {
  const segs = pathname
    .split("/")
    .filter((s) => s !== "")
    .map(decodeURIComponent);
  if (segs[0] === "api") {
    if (segs.length === 1) {
      return {
        type: "document",
        body: {
          kind: "APIVersions",
          versions: ["v1"],
          serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: hostPort }],
        },
      };
    }
    return resourceRoute("", segs[1] ?? "", segs.slice(2));
  }
  if (segs[0] === "apis") {
    if (segs.length === 1) {
      const names = [...new Set(GROUPS.map((g) => g.split("/")[0] ?? ""))];
      const groups = names.map(groupDoc).filter((g): g is JsonObject => g !== undefined);
      for (const g of groups) {
        delete g.kind;
        delete g.apiVersion;
      }
      return { type: "document", body: { kind: "APIGroupList", apiVersion: "v1", groups } };
    }
    if (segs.length === 2) {
      const g = groupDoc(segs[1] ?? "");
      return g ? { type: "document", body: g } : { type: "notfound" };
    }
    return resourceRoute(segs[1] ?? "", segs[2] ?? "", segs.slice(3));
  }
  return { type: "notfound" };
}

function resourceRoute(group: string, version: string, rest: string[]): Route {
  if (rest.length === 0) {
    const list = resourceList(group, version);
    return list ? { type: "document", body: list } : { type: "notfound" };
  }
  let namespace: string | undefined;
  let parts = rest;
  // /namespaces/{ns}/{resource}… — but /namespaces/{name}[/status] is the namespace itself.
  if (
    group === "" &&
    rest[0] === "namespaces" &&
    rest.length >= 3 &&
    rest[2] !== "status" &&
    rest[2] !== "finalize"
  ) {
    namespace = rest[1];
    parts = rest.slice(2);
  } else if (group !== "" && rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    parts = rest.slice(2);
  }
  if (parts.length > 3) return { type: "notfound" };
  const [resource, name, subresource] = parts;
  const kind = findKind(group, version, resource ?? "");
  if (!kind) return { type: "notfound" };
  if (namespace !== undefined && !kind.namespaced) return { type: "notfound" };
  if (namespace === undefined && kind.namespaced && name !== undefined) return { type: "notfound" };
  if (subresource !== undefined && !(kind.subresources as string[]).includes(subresource))
    return { type: "notfound" };
  const r: Route = { type: "resource", kind };
  if (namespace !== undefined) r.namespace = namespace;
  if (name !== undefined) r.name = name;
  if (subresource !== undefined) r.subresource = subresource;
  return r;
}

export { groupVersion };

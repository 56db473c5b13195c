import { eventKind } from "./event.ts";
import type { Kind } from "./kind.ts";
import { leaseKind } from "./lease.ts";
import { namespaceKind } from "./namespace.ts";
import { nodeKind } from "./node.ts";
import { podKind } from "./pod.ts";
import { secretKind } from "./secret.ts";

export const KINDS: Kind[] = [namespaceKind, podKind, secretKind, nodeKind, leaseKind, eventKind];

export function findKind(group: string, version: string, resource: string): Kind | undefined {
  return KINDS.find((k) => k.group === group && k.version === version && k.resource === resource);
}

export type { Kind };
export { eventKind, leaseKind, namespaceKind, nodeKind, podKind, secretKind };

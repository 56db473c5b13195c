import { statfs } from "node:fs/promises";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import type { ContainerSpec } from "./oci-spec.ts";
import { quantityBytes } from "./quantity.ts";

/**
 * A disk-backed emptyDir with a sizeLimit, which the kubelet measures and evicts the pod over (as
 * a real kubelet's eviction manager does): the write itself succeeds.
 */
export interface LimitedVolume {
  name: string;
  /** Where it is mounted inside the container. */
  path: string;
  /** The sizeLimit as the pod spec writes it (the eviction message quotes it). */
  limit: string;
  limitBytes: number;
}

/**
 * How far past its sizeLimit a disk-backed emptyDir's tmpfs may grow before writes get ENOSPC: the
 * host's backstop (tmpfs is the host's memory), between two measurements of the eviction check.
 */
export const EMPTYDIR_BACKSTOP_FACTOR = 2;

/**
 * emptyDir volumes as private tmpfs mounts, and the ones to measure. `medium: Memory` is sized to
 * its sizeLimit (a real kubelet sizes that tmpfs so: a write past it gets ENOSPC); a disk-backed
 * one is sized to EMPTYDIR_BACKSTOP_FACTOR × its limit and measured, since on a real node its
 * writes succeed and the kubelet evicts the pod later. Other volume types are skipped (`skipped`).
 */
export function emptyDirMounts(
  pod: V1Pod,
  c: V1Container,
): { tmpfs: ContainerSpec["tmpfs"]; limited: LimitedVolume[]; skipped: string[] } {
  const tmpfs: ContainerSpec["tmpfs"] = [];
  const limited: LimitedVolume[] = [];
  const skipped: string[] = [];
  for (const m of c.volumeMounts ?? []) {
    const vol = pod.spec?.volumes?.find((v) => v.name === m.name);
    if (!vol?.emptyDir) {
      skipped.push(m.name);
      continue;
    }
    const limit = vol.emptyDir.sizeLimit as string | number | undefined;
    const limitBytes = quantityBytes(limit);
    const memory = vol.emptyDir.medium === "Memory";
    tmpfs.push({
      path: m.mountPath,
      sizeBytes: limitBytes === undefined || memory ? limitBytes : limitBytes * EMPTYDIR_BACKSTOP_FACTOR,
      readOnly: m.readOnly === true,
    });
    if (!memory && limitBytes !== undefined && limitBytes > 0 && !limited.some((l) => l.name === m.name))
      limited.push({ name: m.name, path: m.mountPath, limit: String(limit), limitBytes });
  }
  return { tmpfs, limited, skipped };
}

/** The eviction manager's message, verbatim (trailing space included: it is its format string). */
export function emptyDirEvictionMessage(v: LimitedVolume): string {
  return `Usage of EmptyDir volume "${v.name}" exceeds the limit "${v.limit}". `;
}

/**
 * Bytes in use on the tmpfs mounted at `path` inside the container whose init is `pid`, read
 * through `/proc/PID/root` (the container's mount namespace); undefined once the process is gone.
 */
export async function volumeUsage(pid: number, path: string): Promise<number | undefined> {
  try {
    const s = await statfs(`/proc/${pid}/root${path}`);
    return (s.blocks - s.bfree) * s.bsize;
  } catch {
    return undefined;
  }
}

/**
 * Measures each limited volume every `intervalMs` and calls `exceeded` once, with the kubelet's
 * message, for the first one found over its limit. Returns the stop function.
 */
export function watchEmptyDirs(
  pid: number,
  volumes: LimitedVolume[],
  intervalMs: number,
  exceeded: (message: string) => void,
): () => void {
  let stopped = volumes.length === 0;
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    for (const v of volumes) {
      const used = await volumeUsage(pid, v.path);
      if (stopped) return;
      if (used !== undefined && used > v.limitBytes) {
        stopped = true;
        exceeded(emptyDirEvictionMessage(v));
        return;
      }
    }
    if (!stopped) timer = setTimeout(() => void check(), intervalMs).unref();
  };
  if (!stopped) timer = setTimeout(() => void check(), intervalMs).unref();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

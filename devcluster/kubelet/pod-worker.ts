import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import type { PodEvent } from "../events.ts";
import { BASE_PATH, Container, type ContainerExit, type RuntimeDirs } from "./container.ts";
import { emptyDirMounts, type LimitedVolume, watchEmptyDirs } from "./emptydir.ts";
import { resolveEnv, type SecretReader } from "./env.ts";
import type { IdRangeAllocator } from "./id-ranges.ts";
import { imageRepository } from "./image-ref.ts";
import { type ContainerSpec, DEFAULT_CAPABILITIES, type IdRange } from "./oci-spec.ts";
import type { PodIPAllocator } from "./pod-ips.ts";
import { type Json, now, PodConditions, waitingStatus } from "./pod-status.ts";
import { type ForwarderHost, PortForward } from "./port-forward.ts";
import { probePort, runProbe, runStartupProbe } from "./probes.ts";
import { quantityBytes, quantityMillis } from "./quantity.ts";
import type { EgressProxyRoute, ImageSpec } from "./types.ts";

export interface WorkerContext {
  nodeName: string;
  hostIP: string;
  images: Record<string, ImageSpec>;
  podsDir: string;
  ips: PodIPAllocator;
  idRanges: IdRangeAllocator;
  runtime: RuntimeDirs;
  /** pids limit of every container (the kubelet's podPidsLimit). */
  podPidsLimit: number;
  /** Starts each pod's port forwarder in the pod's network namespace. */
  forwarders: ForwarderHost;
  /** The host's egress proxy as pods reach it (absent: no way out). */
  egressProxy: EgressProxyRoute | undefined;
  readSecret: SecretReader;
  /** Merge-patches pods/NAME/status; resolves false if the pod is gone. */
  patchStatus: (namespace: string, name: string, status: Json) => Promise<boolean>;
  /** Writes a core/v1 Event about the pod (Started, Killing, Unhealthy), as a real kubelet does. */
  record: (pod: V1Pod, e: PodEvent) => void;
  log: (msg: string) => void;
  /** Cap on termination grace periods (ms). */
  maxGraceMs: number;
  /** How often disk-backed emptyDirs are measured against their sizeLimit (the eviction manager's period). */
  evictionIntervalMs: number;
}

const DEFAULT_UID = 1000;

/** containerd's default set, then the securityContext's drop (ALL clears it) and add. */
function capabilities(c: V1Container): string[] {
  const norm = (x: string) =>
    x.toUpperCase().startsWith("CAP_") ? x.toUpperCase() : `CAP_${x.toUpperCase()}`;
  const drop = (c.securityContext?.capabilities?.drop ?? []).map(norm);
  const add = (c.securityContext?.capabilities?.add ?? []).map(norm);
  const base = drop.includes("CAP_ALL") ? [] : DEFAULT_CAPABILITIES.filter((x) => !drop.includes(x));
  return [...new Set([...base, ...add.filter((x) => x !== "CAP_ALL")])];
}
const MAX_RESTART_BACKOFF_MS = 30_000;
const CONFIG_RETRY_MS = 2_000;

/** ~16 s of retries (200 ms doubling, capped at 5 s) for a status patch the API server refused. */
const STATUS_PATCH_ATTEMPTS = 8;
/**
 * Runs one pod's (first) container from creation to termination and reports its status through
 * the status subresource. Everything it creates (sandbox, pod IP, state dir) is released by stop().
 */
export class PodWorker {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  sandbox: Container | undefined;
  private readonly conditions = new PodConditions();
  private readonly startTime = now();
  private readonly stateDir: string;
  private podIP: string | undefined;
  private forward: PortForward | undefined;
  private ids: IdRange | undefined;
  private stopped = false;
  private stopProbe: (() => void) | undefined;
  private restartCount = 0;
  /** The eviction manager's message once the pod was evicted: it ends Failed, whatever its restartPolicy. */
  private evicted: string | undefined;
  private lastState: Json | undefined;
  private statusChain: Promise<unknown> = Promise.resolve();
  private statusSeq = 0;
  private wake: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(
    private pod: V1Pod,
    private readonly ctx: WorkerContext,
  ) {
    this.uid = pod.metadata?.uid ?? "";
    this.namespace = pod.metadata?.namespace ?? "default";
    this.name = pod.metadata?.name ?? "";
    this.stateDir = join(ctx.podsDir, this.uid);
    this.done = this.run().catch((err: unknown) => {
      ctx.log(`pod ${this.key}: worker failed: ${(err as Error).stack ?? String(err)}`);
    });
  }

  get key(): string {
    return `${this.namespace}/${this.name}`;
  }

  /** The container's output (stdout and stderr, every restart appended), what `pods/log` serves. */
  get logPath(): string | undefined {
    const c = this.container;
    return c ? join(this.stateDir, `${c.name}.log`) : undefined;
  }

  get container(): V1Container | undefined {
    return this.pod.spec?.containers?.[0];
  }

  update(pod: V1Pod): void {
    this.pod = pod;
  }

  /**
   * SIGTERM, then SIGKILL after graceMs; frees the pod IP and removes the state dir.
   * Safe to call more than once.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.stopped && this.sandbox?.running)
      this.ctx.record(this.pod, {
        type: "Normal",
        reason: "Killing",
        message: `Stopping container ${this.container?.name ?? ""}`,
      });
    this.stopped = true;
    this.wake?.();
    this.stopProbe?.();
    if (this.sandbox) await this.sandbox.stop(graceMs);
    await this.done;
    this.releaseAddress();
    if (this.ids) this.ctx.idRanges.release(this.ids);
    this.ids = undefined;
    await rm(this.stateDir, { recursive: true, force: true });
  }

  private async run(): Promise<void> {
    const c = this.container;
    if (!c) return;
    this.conditions.set("PodScheduled", true);
    this.conditions.set("Initialized", true);
    this.setReady(false);
    await this.report("Pending", [waitingStatus(c.name, c.image ?? "", "ContainerCreating", undefined, 0)]);

    const image = this.ctx.images[imageRepository(c.image ?? "")];
    if (!image) {
      const known = Object.keys(this.ctx.images).join(", ") || "none";
      const message = `Failed to pull image "${c.image}": devcluster has no image "${imageRepository(c.image ?? "")}" in its image map (known: ${known})`;
      await this.report("Pending", [waitingStatus(c.name, c.image ?? "", "ErrImagePull", message, 0)]);
      return;
    }

    const creds = this.credentials(c);
    if (typeof creds === "string") {
      await this.report("Pending", [
        waitingStatus(c.name, c.image ?? "", "CreateContainerConfigError", creds, 0),
      ]);
      return;
    }
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    if (argv.length === 0) {
      const message = "devcluster images have no entrypoint: the container needs command (and args)";
      await this.report("Pending", [
        waitingStatus(c.name, c.image ?? "", "CreateContainerError", message, 0),
      ]);
      return;
    }

    const ports = this.ports(c);
    this.podIP = await this.ctx.ips.allocate(async (ip) => {
      const fwd = new PortForward(ip, this.ctx.forwarders, this.ctx.log, this.ctx.egressProxy);
      if (!(await fwd.listen(ports))) return false;
      this.forward = fwd;
      return true;
    });
    if (!this.podIP) {
      const message = "no free pod IP on this node";
      await this.report("Pending", [waitingStatus(c.name, c.image ?? "", "ContainerCreating", message, 0)]);
      return;
    }

    let env: Record<string, string> | undefined;
    for (let attempt = 0; !this.stopped; attempt++) {
      const r = await resolveEnv(this.pod, c, this.podIP, this.ctx.hostIP, this.ctx.readSecret).catch(
        (err: unknown) => ({ ok: false as const, message: `cannot resolve env: ${(err as Error).message}` }),
      );
      if (r.ok) {
        env = r.env;
        break;
      }
      if (attempt === 0 || attempt % 10 === 0) {
        await this.report("Pending", [
          waitingStatus(c.name, c.image ?? "", "CreateContainerConfigError", r.message, 0),
        ]);
      }
      await this.sleep(CONFIG_RETRY_MS);
    }
    if (!env || this.stopped) return;

    const limits = c.resources?.limits ?? {};
    const hostname = this.name.slice(0, 63);
    const volumes = emptyDirMounts(this.pod, c);
    for (const name of volumes.skipped)
      this.ctx.log(`pod ${this.key}: volume ${name} is not an emptyDir; devcluster does not mount it`);
    const spec: ContainerSpec = {
      hostname,
      uid: creds.uid,
      gid: creds.gid,
      supplementalGids: this.supplementalGids(creds.gid),
      readOnlyRoot: c.securityContext?.readOnlyRootFilesystem === true,
      workingDir: c.workingDir || "/",
      binds: image.binds,
      tmpfs: volumes.tmpfs,
      argv,
      // The container sees only the pod's environment, never the kubelet's.
      env: { PATH: BASE_PATH, HOSTNAME: hostname, HOME: "/", ...env },
      capabilities: capabilities(c),
      limits: {
        memoryBytes: quantityBytes(limits.memory as string | number | undefined),
        cpuMillis: quantityMillis(limits.cpu as string | number | undefined),
        pids: this.ctx.podPidsLimit,
      },
    };
    this.ids = this.ctx.idRanges.allocate();
    if (!this.ids) {
      const message = "no free user-namespace id range on this node";
      await this.report("Pending", [waitingStatus(c.name, c.image ?? "", "ContainerCreating", message, 0)]);
      return;
    }
    await mkdir(this.stateDir, { recursive: true });

    for (;;) {
      if (this.stopped) return;
      const exit = await this.runOnce(c, spec, this.ids, volumes.limited);
      if (this.stopped) return;
      if (this.evicted !== undefined) {
        await this.report("Failed", [this.terminatedStatus(c, exit, false)], {
          reason: "Evicted",
          message: this.evicted,
        });
        this.releaseAddress();
        return;
      }
      const policy = this.pod.spec?.restartPolicy ?? "Always";
      const restart = policy === "Always" || (policy === "OnFailure" && exit.exitCode !== 0);
      if (!restart) {
        await this.report(exit.exitCode === 0 ? "Succeeded" : "Failed", [
          this.terminatedStatus(c, exit, false),
        ]);
        this.releaseAddress();
        return;
      }
      // CrashLoopBackOff, with a short cap: devcluster favours quick tests over politeness.
      const delay = Math.min(MAX_RESTART_BACKOFF_MS, 1000 * 2 ** this.restartCount);
      this.lastState = { terminated: this.terminatedState(exit) };
      this.restartCount++;
      await this.report("Running", [
        waitingStatus(
          c.name,
          c.image ?? "",
          "CrashLoopBackOff",
          `back-off restarting failed container`,
          this.restartCount,
        ),
      ]);
      await this.sleep(delay);
    }
  }

  private exitAt: { startedAt: string; finishedAt: string } = { startedAt: "", finishedAt: "" };

  private async runOnce(
    c: V1Container,
    spec: ContainerSpec,
    ids: IdRange,
    limited: LimitedVolume[],
  ): Promise<ContainerExit> {
    const id = `${this.uid}-${c.name}-${this.restartCount}`;
    const sandbox = new Container(id, spec, ids, this.ctx.runtime, join(this.stateDir, `${c.name}.log`));
    this.sandbox = sandbox;
    const startedAt = now();
    this.exitAt = { startedAt, finishedAt: startedAt };
    const pid = await sandbox.started();
    if (pid !== undefined && !this.stopped) {
      void this.forward?.attach(pid);
      this.ctx.record(this.pod, {
        type: "Normal",
        reason: "Started",
        message: `Started container ${c.name}`,
      });
      const probe = c.readinessProbe;
      const startup = c.startupProbe?.httpGet ? c.startupProbe : undefined;
      const stops: Array<() => void> = [
        watchEmptyDirs(pid, limited, this.ctx.evictionIntervalMs, (message) => {
          if (!this.stopped && sandbox.running) this.evict(c, sandbox, message);
        }),
      ];
      const graceMs = (p?: { terminationGracePeriodSeconds?: number }) =>
        Math.min(
          (p?.terminationGracePeriodSeconds ?? this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000,
          this.ctx.maxGraceMs,
        );
      // Readiness and liveness probes, from the moment the container counts as started.
      const afterStart = () => {
        if (probe && this.podIP) {
          stops.push(
            runProbe(probe, c, this.podIP, (ready) => {
              if (this.stopped || !sandbox.running) return;
              this.setReady(ready);
              void this.report("Running", [this.runningStatus(c, startedAt, ready)]);
            }),
          );
        }
        const liveness = c.livenessProbe;
        if (liveness?.httpGet && this.podIP) {
          stops.push(
            runProbe(
              liveness,
              c,
              this.podIP,
              (alive) => {
                if (alive || this.stopped || !sandbox.running) return;
                this.ctx.log(`pod ${this.key}: liveness probe failed; killing the container`);
                this.unhealthy(c, "liveness");
                void sandbox.stop(graceMs(liveness));
              },
              true,
            ),
          );
        }
      };
      if (startup && this.podIP) {
        this.setReady(false);
        await this.report("Running", [this.runningStatus(c, startedAt, false, false)]);
        stops.push(
          runStartupProbe(
            startup,
            c,
            this.podIP,
            () => {
              if (this.stopped || !sandbox.running) return;
              this.setReady(!probe);
              void this.report("Running", [this.runningStatus(c, startedAt, !probe)]);
              afterStart();
            },
            () => {
              if (this.stopped || !sandbox.running) return;
              this.ctx.log(`pod ${this.key}: startup probe failed; killing the container`);
              this.unhealthy(c, "startup");
              void sandbox.stop(graceMs(startup));
            },
          ),
        );
      } else {
        this.setReady(!probe);
        await this.report("Running", [this.runningStatus(c, startedAt, !probe)]);
        afterStart();
      }
      this.stopProbe = () => {
        for (const stop of stops) stop();
      };
    }
    const exit = await sandbox.exited;
    this.forward?.detach();
    this.stopProbe?.();
    this.stopProbe = undefined;
    this.exitAt = { startedAt, finishedAt: now() };
    this.setReady(false);
    this.ctx.log(`pod ${this.key}: container exited ${exit.exitCode}`);
    return exit;
  }

  /**
   * What the kubelet's eviction manager does to a pod over its emptyDir sizeLimit: an `Evicted`
   * Warning, the container killed at once (grace period 0), and — when it has exited — phase
   * Failed with reason `Evicted`, the message and a `DisruptionTarget` condition.
   */
  private evict(c: V1Container, sandbox: Container, message: string): void {
    this.ctx.log(`pod ${this.key}: evicted: ${message}`);
    this.evicted = message;
    this.conditions.set("DisruptionTarget", true, "TerminationByKubelet", message);
    this.ctx.record(this.pod, { type: "Warning", reason: "Evicted", message });
    this.ctx.record(this.pod, {
      type: "Normal",
      reason: "Killing",
      message: `Stopping container ${c.name}`,
    });
    sandbox.kill();
  }

  /** A probe that failed its threshold: the Warning a real kubelet writes, then the Killing. */
  private unhealthy(c: V1Container, probe: "liveness" | "startup"): void {
    this.ctx.record(this.pod, {
      type: "Warning",
      reason: "Unhealthy",
      message: `${probe === "liveness" ? "Liveness" : "Startup"} probe failed`,
    });
    this.ctx.record(this.pod, {
      type: "Normal",
      reason: "Killing",
      message: `Container ${c.name} failed ${probe} probe, will be restarted`,
    });
  }

  private setReady(ready: boolean): void {
    const reason = ready ? undefined : "ContainersNotReady";
    this.conditions.set("ContainersReady", ready, reason);
    this.conditions.set("Ready", ready, reason);
  }

  private runningStatus(c: V1Container, startedAt: string, ready: boolean, started = true): Json {
    const s: Json = {
      name: c.name,
      image: c.image ?? "",
      imageID: "",
      containerID: `devcluster://${this.uid}/${c.name}`,
      ready,
      started,
      restartCount: this.restartCount,
      state: { running: { startedAt } },
    };
    if (this.lastState) s.lastState = this.lastState;
    return s;
  }

  private terminatedState(exit: ContainerExit): Json {
    if (this.sandbox?.failedToStart) {
      // As a runtime reports a container whose process could not be started.
      return {
        exitCode: 128,
        reason: "StartError",
        message: this.sandbox.outputTail.trim(),
        startedAt: this.exitAt.startedAt,
        finishedAt: this.exitAt.finishedAt,
      };
    }
    return {
      exitCode: exit.exitCode,
      reason: exit.oomKilled ? "OOMKilled" : exit.exitCode === 0 ? "Completed" : "Error",
      startedAt: this.exitAt.startedAt,
      finishedAt: this.exitAt.finishedAt,
      containerID: `devcluster://${this.uid}/${this.container?.name ?? ""}`,
    };
  }

  private terminatedStatus(c: V1Container, exit: ContainerExit, ready: boolean): Json {
    const s: Json = {
      name: c.name,
      image: c.image ?? "",
      imageID: "",
      containerID: `devcluster://${this.uid}/${c.name}`,
      ready,
      started: false,
      restartCount: this.restartCount,
      state: { terminated: this.terminatedState(exit) },
    };
    if (this.lastState) s.lastState = this.lastState;
    return s;
  }

  /** Status patches go out in order; a gone pod (404) ends reporting quietly. */
  private report(
    phase: string,
    containerStatuses: Json[],
    why?: { reason: string; message: string },
  ): Promise<void> {
    const status: Json = {
      phase,
      ...why,
      hostIP: this.ctx.hostIP,
      hostIPs: [{ ip: this.ctx.hostIP }],
      startTime: this.startTime,
      conditions: this.conditions.render(),
      containerStatuses,
      qosClass: this.pod.status?.qosClass ?? "BestEffort",
    };
    if (this.podIP && phase !== "Pending") {
      status.podIP = this.podIP;
      status.podIPs = [{ ip: this.podIP }];
    }
    const seq = ++this.statusSeq;
    const next = this.statusChain.then(async () => {
      // A failed patch (API server down, say) is retried until it lands or a newer status
      // supersedes it, as the real kubelet's status manager resyncs: the readiness probe reports
      // only transitions, so a dropped "Ready" would leave the pod unready for good.
      for (let attempt = 0; attempt < STATUS_PATCH_ATTEMPTS; attempt++) {
        if (this.stopped && phase !== "Succeeded" && phase !== "Failed") return;
        if (attempt > 0 && (seq !== this.statusSeq || this.stopped)) return;
        try {
          await this.ctx.patchStatus(this.namespace, this.name, status);
          return;
        } catch (err) {
          this.ctx.log(`pod ${this.key}: status patch failed (retrying): ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, Math.min(5_000, 200 * 2 ** attempt)));
      }
    });
    this.statusChain = next;
    return next;
  }

  /** Unbinds the pod's ports and returns its address to the allocator. */
  private releaseAddress(): void {
    void this.forward?.close();
    this.forward = undefined;
    if (this.podIP) this.ctx.ips.release(this.podIP);
    this.podIP = undefined;
  }

  /** fsGroup and supplementalGroups, as the runtime adds them to the process. */
  private supplementalGids(gid: number): number[] {
    const sc = this.pod.spec?.securityContext;
    const out = new Set<number>([gid]);
    if (sc?.fsGroup !== undefined) out.add(sc.fsGroup);
    for (const g of sc?.supplementalGroups ?? []) out.add(g);
    return [...out];
  }

  /** uid/gid per securityContext (container over pod); the runAsNonRoot check a real kubelet does. */
  private credentials(c: V1Container): { uid: number; gid: number } | string {
    const pod = this.pod.spec?.securityContext;
    const ctr = c.securityContext;
    const nonRoot = ctr?.runAsNonRoot ?? pod?.runAsNonRoot ?? false;
    // devcluster images carry no USER: without runAsUser the sandbox runs as 1000, never as root.
    const uid = ctr?.runAsUser ?? pod?.runAsUser ?? DEFAULT_UID;
    const gid = ctr?.runAsGroup ?? pod?.runAsGroup ?? (uid === 0 ? 0 : DEFAULT_UID);
    if (nonRoot && uid === 0) return "container's runAsUser breaks non-root policy";
    return { uid, gid };
  }

  /** Ports that must be free on a candidate pod IP: declared containerPorts and numeric probe ports. */
  private ports(c: V1Container): number[] {
    const ports = new Set<number>();
    for (const p of c.ports ?? []) ports.add(p.containerPort);
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      const p = probe ? probePort(probe, c) : undefined;
      if (p !== undefined) ports.add(p);
    }
    return [...ports];
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

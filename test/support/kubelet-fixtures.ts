import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1EnvVar, V1Pod } from "@kubernetes/client-node";
import WebSocket from "ws";

/**
 * A dependency-free HTTP server for devcluster test images: GET /health → 200 {"ok":true}
 * (503 until READY_AFTER_MS has passed, and again after UNHEALTHY_AFTER_MS), GET /env → the listed env vars. Listens on
 * LISTEN_HOST:PORT, as the real sandbox exec server does.
 */
const HEALTH_SERVER = `
import http from "node:http";
const started = Date.now();
const readyAfter = Number(process.env.READY_AFTER_MS ?? "0");
const unhealthyAfter = Number(process.env.UNHEALTHY_AFTER_MS ?? "Infinity");
const server = http.createServer((req, res) => {
  if (req.url === "/health") {
    const age = Date.now() - started;
    const ok = age >= readyAfter && age < unhealthyAfter;
    res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
    res.end(JSON.stringify({ ok }));
    return;
  }
  if (req.url === "/env") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(process.env));
    return;
  }
  res.writeHead(404).end();
});
server.listen(Number(process.env.PORT ?? "8080"), process.env.LISTEN_HOST ?? "0.0.0.0");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

/** A temp dir holding server.mjs: bind it into the sandbox as an image (e.g. at /app). */
export async function writeHealthServerImage(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "devcluster-image-"));
  await writeFile(join(dir, "server.mjs"), HEALTH_SERVER);
  return dir;
}

export const TEST_IMAGE_REPO = "pi-sandbox-runtime/test-health";

/** A pod shaped like the real sandbox pods (restricted, read-only root, emptyDir /workspace and /tmp). */
export function healthPod(
  name: string,
  opts: {
    env?: V1EnvVar[];
    command?: string[];
    probe?: boolean;
    restartPolicy?: string;
    grace?: number;
  } = {},
): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { app: "devcluster-test" } },
    spec: {
      restartPolicy: opts.restartPolicy ?? "Never",
      terminationGracePeriodSeconds: opts.grace ?? 2,
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
      containers: [
        {
          name: "main",
          image: `${TEST_IMAGE_REPO}:dev`,
          command: opts.command ?? ["node", "/app/server.mjs"],
          env: [
            { name: "PORT", value: "8080" },
            { name: "LISTEN_HOST", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
            ...(opts.env ?? []),
          ],
          ports: [{ name: "http", containerPort: 8080 }],
          readinessProbe:
            opts.probe === false
              ? undefined
              : {
                  httpGet: { path: "/health", port: "http" },
                  periodSeconds: 1,
                  timeoutSeconds: 1,
                  failureThreshold: 2,
                },
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          },
          volumeMounts: [
            { name: "workspace", mountPath: "/workspace" },
            { name: "tmp", mountPath: "/tmp" },
          ],
          workingDir: "/workspace",
        },
      ],
      volumes: [
        { name: "workspace", emptyDir: { sizeLimit: "64Mi" } },
        { name: "tmp", emptyDir: { sizeLimit: "16Mi" } },
      ],
    },
  };
}

export interface RawExecResult {
  stdout: Buffer;
  stderr: Buffer;
  /** The status JSON (channel 3), or undefined if the socket closed without one. */
  status:
    | {
        status?: string;
        reason?: string;
        message?: string;
        details?: { causes?: Array<{ reason?: string; message?: string }> };
      }
    | undefined;
  closeCode: number;
  protocol: string;
}

/** Exit code from a Kubernetes exec Status: 0 on Success, the ExitCode cause otherwise. */
export function exitCodeOf(status: RawExecResult["status"]): number | undefined {
  if (!status) return undefined;
  if (status.status === "Success") return 0;
  const cause = status.details?.causes?.find((c) => c.reason === "ExitCode");
  return cause?.message === undefined ? undefined : Number(cause.message);
}

/**
 * A raw channel-protocol exec client (the `ws` package, no client-node), for the kubelet's own
 * endpoint. `onOpen` may send stdin frames.
 */
export function rawExec(
  url: string,
  opts: {
    /** Client certificate, key and the CA of the kubelet's serving certificate. */
    tls?: { cert?: string; key?: string; ca: string };
    protocols?: string[];
    timeoutMs?: number;
    onOpen?: (ws: WebSocket) => void;
  } = {},
): Promise<RawExecResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? ["v5.channel.k8s.io", "v4.channel.k8s.io"], {
      ...(opts.tls ?? {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let status: RawExecResult["status"];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`exec timed out after ${opts.timeoutMs ?? 20_000} ms`));
    }, opts.timeoutMs ?? 20_000);
    ws.on("open", () => opts.onOpen?.(ws));
    ws.on("message", (data: Buffer, isBinary) => {
      if (!isBinary) {
        reject(new Error("server sent a text frame"));
        return;
      }
      const ch = data[0];
      if (ch === 1) out.push(data.subarray(1));
      else if (ch === 2) err.push(data.subarray(1));
      else if (ch === 3) status = JSON.parse(data.subarray(1).toString("utf8"));
      else reject(new Error(`unexpected channel ${ch}`));
    });
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode }));
    });
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on("close", (code) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        status,
        closeCode: code,
        protocol: ws.protocol,
      });
    });
  });
}

/** `command=a&command=b&stdout=true…` as kubectl and client-node build it. */
export function execQuery(command: string[], opts: { stdin?: boolean } = {}): string {
  const q = new URLSearchParams();
  for (const c of command) q.append("command", c);
  // The names the API server uses toward a kubelet.
  q.set("input", opts.stdin ? "1" : "0");
  q.set("output", "1");
  q.set("error", "1");
  q.set("tty", "0");
  return q.toString();
}

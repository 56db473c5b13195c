import { request } from "node:http";
import type { V1Container, V1Probe } from "@kubernetes/client-node";

/** One httpGet probe attempt: 200–399 within the timeout is success, as on a real node. */
export function httpGetOnce(host: string, port: number, path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host, port, path, method: "GET", timeout: timeoutMs, headers: { "user-agent": "kube-probe/1.26" } },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        resolve(code >= 200 && code < 400);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
    req.end();
  });
}

/** The numeric port of a probe: a number, or a containerPort name. */
export function probePort(probe: V1Probe, container: V1Container): number | undefined {
  const p = probe.httpGet?.port;
  if (typeof p === "number") return p;
  if (typeof p === "string") {
    if (/^\d+$/.test(p)) return Number(p);
    return container.ports?.find((cp) => cp.name === p)?.containerPort;
  }
  return undefined;
}

/**
 * Runs a probe's httpGet on its schedule (initialDelaySeconds, then every periodSeconds, each try
 * bounded by timeoutSeconds; Kubernetes defaults 0, 10, 1), handing each result to `onResult`,
 * until that returns false or the returned function is called.
 */
function poll(
  probe: V1Probe,
  container: V1Container,
  host: string,
  onResult: (ok: boolean) => boolean,
): () => void {
  const port = probePort(probe, container);
  const path = probe.httpGet?.path ?? "/";
  const periodMs = (probe.periodSeconds ?? 10) * 1000;
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    if (stopped) return;
    const ok = port === undefined ? false : await httpGetOnce(host, port, path, timeoutMs);
    if (stopped) return;
    if (!onResult(ok)) {
      stopped = true;
      return;
    }
    timer = setTimeout(tick, periodMs);
  };
  timer = setTimeout(tick, (probe.initialDelaySeconds ?? 0) * 1000);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

/**
 * Runs a probe until stopped, calling `onChange` when the result flips. A readiness probe starts
 * from failing (`initial` false), a liveness probe from passing (true). Honours successThreshold
 * and failureThreshold with the Kubernetes defaults (1, 3).
 */
export function runProbe(
  probe: V1Probe,
  container: V1Container,
  host: string,
  onChange: (ready: boolean) => void,
  initial = false,
): () => void {
  const successThreshold = probe.successThreshold ?? 1;
  const failureThreshold = probe.failureThreshold ?? 3;
  let ready = initial;
  let successes = 0;
  let failures = 0;
  return poll(probe, container, host, (ok) => {
    if (ok) {
      failures = 0;
      successes++;
      if (!ready && successes >= successThreshold) {
        ready = true;
        onChange(true);
      }
    } else {
      successes = 0;
      failures++;
      if (ready && failures >= failureThreshold) {
        ready = false;
        onChange(false);
      }
    }
    return true;
  });
}

/**
 * A startup probe: polls until it passes once (`onStarted`, then stops for good) or fails
 * failureThreshold times in a row (`onFailed`: the kubelet kills the container). A real kubelet
 * runs neither readiness nor liveness probes before it has passed, and never again after.
 */
export function runStartupProbe(
  probe: V1Probe,
  container: V1Container,
  host: string,
  onStarted: () => void,
  onFailed: () => void,
): () => void {
  const failureThreshold = probe.failureThreshold ?? 3;
  let failures = 0;
  return poll(probe, container, host, (ok) => {
    if (ok) onStarted();
    else if (++failures >= failureThreshold) onFailed();
    else return true;
    return false;
  });
}

import { request } from "node:https";

export interface HttpsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One request to devcluster's HTTPS API server, trusting only its CA (global `fetch` cannot be
 * given a CA per call). Ends with an error after `timeoutMs`.
 */
export function httpsRequest(
  url: string,
  opts: { ca: string; method?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number },
): Promise<HttpsReply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "GET", headers: opts.headers, ca: opts.ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", reject);
    });
    const ms = opts.timeoutMs ?? 10_000;
    req.setTimeout(ms, () => req.destroy(new Error(`${opts.method ?? "GET"} ${url}: no answer in ${ms} ms`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

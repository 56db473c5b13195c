import { request } from "node:http";
import { Readable } from "node:stream";

/**
 * `fetch` for a port link URL (`http://<link id>.localhost:<port>/…`) from Node: curl and Chromium
 * resolve `*.localhost` to loopback, Node's resolver does not, so this connects to 127.0.0.1 and
 * sends the link's host as the Host header — the same request a browser sends. No redirects, no
 * cookie jar: the test handles those itself.
 */
export function linkFetch(
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: Uint8Array | string;
    timeoutMs?: number;
  } = {},
): Promise<Response> {
  const u = new URL(url);
  if (!u.hostname.endsWith(".localhost")) throw new Error(`not a *.localhost link: ${url}`);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: Number(u.port) || 80,
        method: init.method ?? "GET",
        path: `${u.pathname}${u.search}`,
        headers: { host: u.host, ...init.headers },
        timeout: init.timeoutMs ?? 60_000,
      },
      (res) => {
        const headers = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          for (const v of [value ?? []].flat()) headers.append(name, v);
        }
        const status = res.statusCode ?? 0;
        const empty = status === 204 || status === 304 || init.method === "HEAD";
        resolve(
          new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
            status,
            headers,
          }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url}`)));
    req.on("error", reject);
    req.end(init.body);
  });
}

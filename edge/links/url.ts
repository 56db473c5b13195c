import { LinkIdSchema, PORT_LINK_TOKEN } from "../../shared/api.ts";

/**
 * Host-based links: a link lives at `<link id>.<the edge's host>`, its own browser origin. Under a
 * path prefix (`/links/<token>/…`) an app that uses absolute paths (`/static/app.js`, most dev
 * servers' bundles) breaks, and every sandbox's page would share the edge's origin (its cookies
 * and storage, the dashboard's too). `*.localhost` resolves to loopback in curl and Chromium, so
 * an edge on 127.0.0.1 hands out `<id>.localhost` links.
 */
export function linkUrl(apiUrl: string, linkId: string, token: string): string {
  const u = new URL(apiUrl);
  const loopback = u.hostname === "localhost" || /^[0-9.]+$/.test(u.hostname) || u.hostname.startsWith("[");
  const base = loopback ? "localhost" : u.hostname;
  const port = u.port ? `:${u.port}` : "";
  return `${u.protocol}//${linkId}.${base}${port}/?${PORT_LINK_TOKEN.query}=${encodeURIComponent(token)}`;
}

/** The link id a request's host names (`<id>.<anything>`), or undefined for any other host. */
export function linkIdOfHost(host: string | undefined): string | undefined {
  const name = (host ?? "").toLowerCase();
  const dot = name.indexOf(".");
  if (dot <= 0) return undefined;
  const label = name.slice(0, dot);
  return LinkIdSchema.safeParse(label).success ? label : undefined;
}

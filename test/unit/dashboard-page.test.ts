import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { dashboardHeaders, dashboardHtml, dashboardResponse } from "../../edge/dashboard/page.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest("base64");

describe("dashboard page document", () => {
  const html = dashboardHtml();
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);

  it("is one self-contained document: one inline script, one inline style, no external resources", () => {
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(scripts).toHaveLength(1);
    expect(styles).toHaveLength(1);
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/@import|url\(/i);
    expect(html.length).toBeLessThan(80_000);
  });

  it("the CSP allows exactly the inline script and style, by hash, and only same-origin fetches", async () => {
    const h = await dashboardHeaders();
    const csp = h["content-security-policy"]!;
    expect(csp).toContain(`script-src 'sha256-${sha256(scripts[0]!)}'`);
    expect(csp).toContain(`style-src 'sha256-${sha256(styles[0]!)}'`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain("unsafe-inline");
    expect(h["cache-control"]).toBe("no-store");
    expect(h["referrer-policy"]).toBe("no-referrer");
  });

  it("the script is the reducer and client from the modules, and parses", () => {
    const js = scripts[0]!;
    expect(js).toContain("createSseParser");
    expect(js).toContain("pi-sandbox-dashboard-token");
    // Syntax check without running it (it needs a DOM).
    expect(() => new Function(js)).not.toThrow();
    // The token is read from the fragment and session storage, never from the query string.
    expect(js).not.toMatch(/searchParams\.get\(["']token/);
    expect(js).not.toMatch(/URLSearchParams\(location\.search\)\.get/);
  });

  it("dashboardResponse serves it with those headers; options change the paths", async () => {
    const res = await dashboardResponse();
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await res.text()).toBe(html);
    const other = dashboardHtml({ eventsPath: "/admin/events", poolPath: "/admin/pool" });
    expect(other).toContain('"eventsPath":"/admin/events"');
    expect(other).toContain('"poolPath":"/admin/pool"');
  });
});

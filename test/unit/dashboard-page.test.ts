import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { bundleDashboardScript, generatedModule } from "../../edge/dashboard/client/build.ts";
import { dashboardHeaders, dashboardHtml, dashboardResponse } from "../../edge/dashboard/page.ts";
import { DASHBOARD_SCRIPT } from "../../edge/dashboard/script.gen.ts";

const sha256 = (s: string) => createHash("sha256").update(s).digest("base64");

describe("dashboard page document", () => {
  const html = dashboardHtml();
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
  const config = /<script type="application\/json" id="dashboard-config">([\s\S]*?)<\/script>/.exec(
    html,
  )?.[1];
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);

  it("is one self-contained document: one inline script, one inline style, no external resources", () => {
    expect(html.startsWith("<!doctype html>")).toBe(true);
    expect(scripts).toHaveLength(1);
    // The only other script element is data, which browsers never run.
    expect(html.match(/<script/g)).toHaveLength(2);
    expect(JSON.parse(config!)).toEqual({ eventsPath: "/v1/events", poolPath: "/v1/pool" });
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

  it("the script is the bundle of the modules, and parses", () => {
    const js = scripts[0]!;
    expect(js).toBe(DASHBOARD_SCRIPT);
    // The one SSE codec (shared/sse.ts) is in the bundle: the page has no parser of its own.
    expect(js).toContain("SseParser");
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
    // A path cannot close the config element and inject markup.
    expect(dashboardHtml({ eventsPath: "</script><script>alert(1)//" })).not.toContain(
      "</script><script>alert",
    );
  });

  it("script.gen.ts is the bundle of the modules as they are now (else: npm run build:dashboard)", async () => {
    const fresh = generatedModule(await bundleDashboardScript());
    const { readFile } = await import("node:fs/promises");
    const checkedIn = await readFile(new URL("../../edge/dashboard/script.gen.ts", import.meta.url), "utf8");
    expect(checkedIn === fresh, "edge/dashboard/script.gen.ts is stale: run `npm run build:dashboard`").toBe(
      true,
    );
  });
});

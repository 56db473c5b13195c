import { DASHBOARD_SCRIPT } from "./script.gen.ts";

/*
 * The dashboard is one HTML document with inline CSS and JS and no external requests. The script
 * is the bundle of client/main.ts and the modules it imports (reducer, view, decoder, connection,
 * renderer, shared/sse.ts), generated into script.gen.ts by client/build.ts: a plain string
 * constant, so the Worker needs no build step of its own (README.md says why). The page's options
 * travel as JSON in a non-executable `<script type="application/json">`, so the script, and so its
 * CSP hash, is the same for every page.
 */

/** What the page's script reads from `#dashboard-config` (client/main.ts). */
export interface DashboardClientOptions {
  /** Same-origin path of the SSE stream (`?region=` is appended per region). */
  eventsPath: string;
  /** Same-origin path of the per-region pool overview that names the regions. */
  poolPath: string;
}

export interface DashboardPageOptions {
  /** Same-origin path of the admin event stream (default `/v1/events`). */
  eventsPath?: string;
  /** Same-origin path of the pool overview naming the regions (default `/v1/pool`). */
  poolPath?: string;
}

const STYLE = `
:root{--bg:#f4f6f9;--panel:#fff;--ink:#17202c;--muted:#5b6778;--line:#dde3ea;--accent:#2f5bd3;
--ready:#127a43;--ready-bg:#e5f5ec;--leased:#2f5bd3;--leased-bg:#e8eeff;--starting:#9a5b00;--starting-bg:#fdf2dc;
--recycling:#6b4fa8;--recycling-bg:#f0ebfa;--failed:#b42318;--failed-bg:#fdecea;--warn:#b42318;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
*{box-sizing:border-box}body{margin:0}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
header.top{position:sticky;top:0;z-index:2;display:flex;align-items:center;gap:16px;padding:10px 20px;background:#111a2b;color:#fff;flex-wrap:wrap}
header.top h1{font-size:16px;margin:0;font-weight:600;letter-spacing:.2px}header.top h1 span{color:#9fb0cc;font-weight:400}
.conn{display:flex;align-items:center;gap:8px;margin-left:auto;font-size:13px;color:#d7dff0}
.dot{width:10px;height:10px;border-radius:50%;background:#8a94a6;flex:none}
.conn[data-state=live] .dot{background:#34c774;box-shadow:0 0 0 3px rgba(52,199,116,.25)}
.conn[data-state=connecting] .dot,.conn[data-state=connected] .dot{background:#f0b429}
.conn[data-state=reconnecting] .dot{background:#f0b429;animation:blink 1s infinite}
.conn[data-state=signed-out] .dot{background:#e5484d}@keyframes blink{50%{opacity:.3}}
button{font:inherit;border-radius:6px;border:1px solid var(--line);background:#fff;color:var(--ink);padding:6px 12px;cursor:pointer}
button:focus-visible,input:focus-visible{outline:3px solid #8aa8ff;outline-offset:1px}
header.top button{background:transparent;color:#d7dff0;border-color:#3a4760}
main{padding:16px 20px 32px;max-width:1600px;margin:0 auto}
.notice,.auth{max-width:720px;margin:16px auto;padding:14px 16px;border-radius:8px;border:1px solid var(--line);background:var(--panel)}
.notice{border-color:#f0b429;background:#fff8e6}
.auth p{margin:0 0 10px;font-weight:500}.auth[data-code=token_expired] p,.auth[data-code=insufficient_scope] p,.auth[data-code=invalid_token] p,.auth[data-code=unauthenticated] p{color:var(--failed)}
.auth form{display:flex;gap:8px;flex-wrap:wrap;align-items:center}.auth label{width:100%;color:var(--muted);font-size:13px}
.auth input{flex:1 1 260px;font:inherit;padding:7px 10px;border:1px solid var(--line);border-radius:6px}
.auth button{background:var(--accent);color:#fff;border-color:var(--accent)}
.empty{color:var(--muted);text-align:center;padding:40px 0}
.region[data-stale=true]{opacity:.55}.notice ul{margin:0;padding-left:18px}
.region{margin-bottom:24px}
.region-head{display:flex;align-items:baseline;gap:14px;flex-wrap:wrap;margin:4px 0 10px}
.region-head h2{font-size:18px;margin:0}.meta{display:flex;gap:10px;flex-wrap:wrap;color:var(--muted);font-size:13px}
.meta span+span::before{content:"·";margin-right:10px;color:#aab3c0}
.totals{display:grid;grid-template-columns:repeat(5,minmax(0,1fr));gap:10px;margin:0 0 12px}
.stat{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.stat dt{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}.stat dd{margin:2px 0 0;font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
.cols{display:grid;grid-template-columns:minmax(0,3fr) minmax(240px,1fr);gap:12px;margin-bottom:12px}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:12px}
.panel-head{display:flex;align-items:center;justify-content:space-between;gap:8px;margin-bottom:10px;flex-wrap:wrap}
.panel h3{font-size:14px;margin:0;text-transform:uppercase;letter-spacing:.5px;color:var(--muted)}
.counts{display:flex;gap:6px;flex-wrap:wrap}.count{font-size:12px;padding:2px 8px;border-radius:10px;font-weight:600}
.tiles{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(168px,1fr));gap:8px}
.tile{border:1px solid var(--line);border-left-width:4px;border-radius:8px;padding:8px 10px;min-height:112px;background:#fff;min-width:0}
.pod-name{font-weight:600;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;margin-bottom:4px}
.tile-sub{display:flex;align-items:center;gap:8px;min-width:0;font-size:12px}.by{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.4px;padding:1px 7px;border-radius:10px;flex:none}
.s-ready{--c:var(--ready);--cb:var(--ready-bg)}.s-leased{--c:var(--leased);--cb:var(--leased-bg)}
.s-starting{--c:var(--starting);--cb:var(--starting-bg)}.s-recycling{--c:var(--recycling);--cb:var(--recycling-bg)}
.s-failed{--c:var(--failed);--cb:var(--failed-bg)}
.tile{border-left-color:var(--c)}.tile.s-leased{background:var(--cb)}.badge,.count{color:var(--c);background:var(--cb)}
.tile.s-leased .badge{background:#fff}
.hint{color:var(--muted)}.ip{margin:8px 0 0;font:12px ui-monospace,Menlo,Consolas,monospace;color:var(--muted)}
.kv{display:grid;grid-template-columns:1fr 1fr;gap:2px 8px;margin:6px 0}.kv div{min-width:0}.kv .wide{grid-column:1/-1}
.kv dt{font-size:10px;color:var(--muted);text-transform:uppercase;letter-spacing:.4px}.kv dd{margin:0;font-size:12px;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-variant-numeric:tabular-nums}
.ttl.warn{color:var(--warn)}
.ttl-bar{width:100%;height:6px;display:block}
.depth{font-size:13px;color:var(--muted)}.depth span{font-size:18px;font-weight:700;color:var(--ink)}
.waiters{list-style:none;margin:0;padding:0;display:flex;flex-direction:column;gap:6px}
.waiters li{display:flex;align-items:center;gap:8px;padding:6px 8px;border:1px solid var(--line);border-radius:6px;background:#fffaf0}
.pos{font-weight:700;color:var(--starting);width:18px;text-align:center}.who{display:flex;flex-direction:column;min-width:0;flex:1}
.who code{color:var(--muted);overflow:hidden;text-overflow:ellipsis}.waited{font-weight:600;font-variant-numeric:tabular-nums}
.muted{color:var(--muted);margin:0}
.table-wrap{overflow-x:auto}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.4px;color:var(--muted);font-weight:600;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:6px 8px;border-bottom:1px solid #eef1f5;white-space:nowrap;vertical-align:middle}
td.cmd{max-width:380px;overflow:hidden;text-overflow:ellipsis}ul.procs{list-style:none;margin:0;padding:0}td.cmd code{color:#24324a}
.num{text-align:right;font-variant-numeric:tabular-nums}
tr.new td{animation:flash 1.6s ease-out}@keyframes flash{from{background:#fff6cc}to{background:transparent}}
.empty-row td{color:var(--muted);text-align:center;padding:18px}
.pill{display:inline-block;min-width:28px;text-align:center;font-size:12px;font-weight:700;padding:1px 8px;border-radius:10px}
.pill.ok{color:var(--ready);background:var(--ready-bg)}.pill.bad{color:var(--failed);background:var(--failed-bg)}.pill.run{color:var(--leased);background:var(--leased-bg)}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
@media (max-width:900px){.cols{grid-template-columns:1fr}.totals{grid-template-columns:repeat(3,minmax(0,1fr));gap:8px}.stat{padding:6px 10px}.stat dt{font-size:11px}.stat dd{font-size:17px}
header.top{padding:10px 12px}main{padding:12px}.tiles{grid-template-columns:repeat(auto-fill,minmax(140px,1fr))}.tile{min-height:0}}
@media (prefers-reduced-motion:reduce){*{animation:none!important}}
`;

const BODY = `
<header class="top">
  <h1>pi-sandbox-runtime <span>· sandbox pool</span></h1>
  <div id="conn" class="conn" role="status" aria-live="polite" data-testid="connection-status" data-state="idle">
    <span class="dot" aria-hidden="true"></span><span id="conn-text" data-testid="connection-text">Starting…</span>
  </div>
  <button id="signout" type="button" hidden>Sign out</button>
</header>
<main>
  <p id="notice" class="notice" role="note" data-testid="notice" hidden></p>
  <section id="auth" class="auth" aria-labelledby="auth-message" data-testid="auth-panel" hidden>
    <p id="auth-message" role="alert" data-testid="auth-message"></p>
    <form id="login" data-testid="login-form" autocomplete="off">
      <label for="token">Admin bearer token (scope <code>sandbox:admin</code>). It stays in this tab only.</label>
      <input id="token" name="token" type="password" spellcheck="false" data-testid="token-input" required>
      <button type="submit" data-testid="token-submit">Connect</button>
    </form>
  </section>
  <div id="region-errors" class="notice" role="status" data-testid="region-errors" hidden></div>
  <p id="empty" class="empty" data-testid="empty">Waiting for the first pool snapshot…</p>
  <div id="regions" data-testid="regions"></div>
</main>
`;

function configJson(opts: DashboardClientOptions): string {
  // `<` escaped: the JSON sits inside a <script> element and must not be able to close it.
  return JSON.stringify(opts).replace(/</g, "\\u003c");
}

const built = new Map<string, string>();

function build(opts: DashboardPageOptions): string {
  const client: DashboardClientOptions = {
    eventsPath: opts.eventsPath ?? "/v1/events",
    poolPath: opts.poolPath ?? "/v1/pool",
  };
  const key = JSON.stringify(client);
  const hit = built.get(key);
  if (hit) return hit;
  const html =
    `<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">\n` +
    `<meta name="referrer" content="no-referrer">\n<title>Sandbox pool · pi-sandbox-runtime</title>\n` +
    `<style>${STYLE}</style>\n</head>\n<body data-conn="idle">${BODY}` +
    `<script type="application/json" id="dashboard-config">${configJson(client)}</script>\n` +
    `<script>${DASHBOARD_SCRIPT}</script>\n</body>\n</html>\n`;
  built.set(key, html);
  return html;
}

/** The whole page as one string (the same string for the same options). */
export function dashboardHtml(opts: DashboardPageOptions = {}): string {
  return build(opts);
}

async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  let bin = "";
  for (const b of new Uint8Array(digest)) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * Response headers for the page: a CSP that allows exactly the inline script and style (by hash)
 * and same-origin fetches, no framing, no referrer, no caching of a page that holds a token.
 */
export async function dashboardHeaders(): Promise<Record<string, string>> {
  const [scriptHash, styleHash] = await Promise.all([sha256Base64(DASHBOARD_SCRIPT), sha256Base64(STYLE)]);
  return {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'sha256-${scriptHash}'`,
      `style-src 'sha256-${styleHash}'`,
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
  };
}

/** `GET /dashboard` in one call: `app.get("/dashboard", () => dashboardResponse())`. */
export async function dashboardResponse(opts: DashboardPageOptions = {}): Promise<Response> {
  return new Response(dashboardHtml(opts), { status: 200, headers: await dashboardHeaders() });
}

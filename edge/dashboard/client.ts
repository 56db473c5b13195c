// @ts-nocheck -- browser code: the edge program has Workers types, not the DOM's. It is checked by
// running it: test/browser/dashboard.test.ts drives this exact function in Chromium.
import type { DashboardCore } from "./state.ts";

export interface DashboardClientOptions {
  /** Same-origin path of the SSE stream (`?region=` is appended per region). */
  eventsPath: string;
  /** Same-origin path of the per-region pool overview that names the regions. */
  poolPath: string;
}

/**
 * The page's script: token handling, the SSE connection (fetch + reader, since EventSource cannot
 * send an Authorization header), reconnection, and drawing the view model from state.ts.
 * Inlined into the page with `Function.prototype.toString`, so it must be self-contained: use only
 * its parameters, its own locals and browser globals.
 */
export function dashboardClient(core: DashboardCore, opts: DashboardClientOptions): void {
  const TOKEN_KEY = "pi-sandbox-dashboard-token";
  const CONNECT_TIMEOUT_MS = 15_000;
  // The agent pings every 15 s; three missed pings means the stream is dead even if TCP is not.
  const IDLE_TIMEOUT_MS = 45_000;
  const MAX_BACKOFF_MS = 15_000;

  const $ = (id) => document.getElementById(id);
  const els = {
    conn: $("conn"),
    connText: $("conn-text"),
    auth: $("auth"),
    authMessage: $("auth-message"),
    login: $("login"),
    tokenInput: $("token"),
    signout: $("signout"),
    regions: $("regions"),
    empty: $("empty"),
    notice: $("notice"),
    regionErrors: $("region-errors"),
  };

  let state = core.initialState();
  let token = null;
  let renderQueued = false;
  let lastMessageAt = null;
  let regionErrorsHtml = "";
  const rendered = new Map();

  const esc = (v) =>
    String(v ?? "").replace(
      /[&<>"']/g,
      (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
    );
  const short = (id, n = 12) => (id && id.length > n ? `${id.slice(0, n)}…` : id || "—");

  // ---------- token ----------

  function readStoredToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }
  function storeToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // storage disabled: the token lives only in memory for this page
    }
  }
  /** `#token=…` is taken once and removed from the address bar (and so from history). */
  function takeTokenFromFragment() {
    const hash = location.hash.startsWith("#") ? location.hash.slice(1) : location.hash;
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const t = params.get("token");
    if (t === null) return null;
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return t.trim() || null;
  }

  // ---------- status and messages ----------

  function setStatus(kind, text) {
    els.conn.dataset.state = kind;
    els.connText.textContent = text;
    document.body.dataset.conn = kind;
  }
  function showAuth(code, message) {
    els.auth.hidden = false;
    els.auth.dataset.code = code;
    els.authMessage.textContent = message;
    els.signout.hidden = true;
    render();
    setTimeout(() => els.tokenInput.focus(), 0);
  }
  function hideAuth() {
    els.auth.hidden = true;
    els.auth.dataset.code = "";
    els.authMessage.textContent = "";
    els.signout.hidden = false;
  }

  const AUTH_MESSAGES = {
    no_token:
      "No token yet. Paste an admin token (scope sandbox:admin) below, or open this page as /dashboard#token=… .",
    token_expired: "Your token has expired. Paste a fresh admin token to reconnect.",
    insufficient_scope:
      "This token is valid but lacks the sandbox:admin scope needed to watch the pool. Use an admin token.",
    invalid_token: "The edge rejected this token as invalid. Check that you pasted the whole token.",
    unauthenticated: "The edge did not accept this token. Paste a valid admin token.",
    missing_tenant: "This token names no tenant, so the edge refused it. Use an admin token.",
  };

  // ---------- connection ----------
  //
  // GET /v1/pool names the regions (and gives their snapshots at once); then one SSE stream per
  // region, `/v1/events?region=…`, each reconnecting on its own. If /v1/pool is unavailable, one
  // stream to `/v1/events` (the edge's nearest region) is used instead.

  /** key (region, or "" for the default stream) → stream state */
  const streams = new Map();
  /** Regions /v1/pool could not reach, with the edge's reason; cleared when their stream is live. */
  const regionErrors = new Map();
  let generation = 0;

  function authHeaders(accept) {
    return { Authorization: `Bearer ${token}`, Accept: accept };
  }

  function stopAll() {
    generation += 1;
    for (const st of streams.values()) stopStream(st);
    streams.clear();
  }
  function stopStream(st) {
    if (st.retryTimer) clearTimeout(st.retryTimer);
    st.retryTimer = null;
    if (st.controller) st.controller.abort();
    st.controller = null;
  }

  /** One line for all streams: live only when every region's stream is. */
  function updateStatus() {
    const all = [...streams.values()];
    if (all.length === 0) return;
    const named = (st, text) => (all.length > 1 && st.key ? `${st.key}: ${text}` : text);
    const down = all.find((st) => st.state === "reconnecting");
    if (down) {
      const left = Math.max(0, Math.ceil((down.until - Date.now()) / 1000));
      setStatus(
        "reconnecting",
        named(down, `${down.reason} — reconnecting${left > 0 ? ` in ${left} s` : ""}…`),
      );
      return;
    }
    if (all.every((st) => st.state === "live")) {
      setStatus("live", all.length > 1 ? `Live · ${all.length} regions` : "Live");
      return;
    }
    const waiting = all.find((st) => st.state !== "live");
    setStatus(
      "connecting",
      named(waiting, waiting.state === "connected" ? "Waiting for the snapshot…" : "Connecting…"),
    );
  }

  async function readError(res) {
    try {
      const body = await res.json();
      if (body && typeof body === "object" && body.error && typeof body.error.code === "string")
        return body.error;
    } catch {
      // not the envelope: fall back to the status line
    }
    return { code: "", message: res.statusText || `HTTP ${res.status}` };
  }

  /** 401/403 end every stream: retrying cannot help until the operator gives another token. */
  async function authFailed(res) {
    const error = await readError(res);
    const code = error.code || (res.status === 403 ? "insufficient_scope" : "unauthenticated");
    stopAll();
    token = null;
    storeToken(null);
    setStatus("signed-out", res.status === 403 ? "Not authorised" : "Signed out");
    showAuth(code, AUTH_MESSAGES[code] ?? `${error.message} (${code})`);
  }

  function applyMessage(m) {
    const msg = core.toMessage(m);
    if (!msg) return false;
    state = core.reduce(state, msg, Date.now());
    lastMessageAt = Date.now();
    scheduleRender();
    return true;
  }

  async function start() {
    stopAll();
    const gen = generation;
    if (!token) {
      setStatus("signed-out", "Not connected");
      showAuth("no_token", AUTH_MESSAGES.no_token);
      return;
    }
    setStatus("connecting", "Connecting…");
    let regions = null;
    const discovery = new AbortController();
    const timer = setTimeout(() => discovery.abort(), CONNECT_TIMEOUT_MS);
    try {
      const res = await fetch(opts.poolPath, {
        headers: authHeaders("application/json"),
        cache: "no-store",
        credentials: "omit",
        signal: discovery.signal,
      });
      if (gen !== generation) return;
      if (res.status === 401 || res.status === 403) {
        await authFailed(res);
        return;
      }
      const body = res.ok ? await res.json() : null;
      if (body && Array.isArray(body.regions)) {
        regions = [];
        regionErrors.clear();
        for (const r of body.regions) {
          if (!r || typeof r.region !== "string") continue;
          regions.push(r.region);
          if (r.pool) applyMessage({ event: "snapshot", data: JSON.stringify(r.pool), id: null });
          else if (r.error) regionErrors.set(r.region, `${r.error.message} (${r.error.code})`);
        }
      }
    } catch {
      // no region list: fall back to the edge's default stream
    } finally {
      clearTimeout(timer);
    }
    if (gen !== generation) return;
    hideAuth();
    const targets =
      regions && regions.length > 0
        ? regions.map((r) => ({ key: r, path: `${opts.eventsPath}?region=${encodeURIComponent(r)}` }))
        : [{ key: "", path: opts.eventsPath }];
    for (const t of targets) {
      const st = {
        ...t,
        state: "connecting",
        reason: "",
        until: 0,
        attempt: 0,
        controller: null,
        retryTimer: null,
      };
      streams.set(t.key, st);
      connectStream(st, gen);
    }
    updateStatus();
    scheduleRender();
  }

  /** Jittered exponential backoff per stream; the status line counts down so it visibly retries. */
  function reconnectLater(st, gen, reason, minDelayMs = 0) {
    stopStream(st);
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** st.attempt);
    const delay = Math.max(minDelayMs, Math.round(base * (0.5 + Math.random() * 0.5)));
    st.attempt += 1;
    st.state = "reconnecting";
    st.reason = reason;
    st.until = Date.now() + delay;
    st.retryTimer = setTimeout(() => connectStream(st, gen), delay);
    updateStatus();
    render();
  }

  async function connectStream(st, gen) {
    if (gen !== generation) return;
    stopStream(st);
    const my = new AbortController();
    st.controller = my;
    if (st.state !== "reconnecting") st.state = "connecting";
    const connectTimer = setTimeout(() => my.abort(), CONNECT_TIMEOUT_MS);
    let res = null;
    try {
      res = await fetch(st.path, {
        headers: authHeaders("text/event-stream"),
        cache: "no-store",
        credentials: "omit",
        signal: my.signal,
      });
    } catch {
      clearTimeout(connectTimer);
      if (st.controller === my && gen === generation) reconnectLater(st, gen, "Edge unreachable");
      return;
    }
    clearTimeout(connectTimer);
    if (st.controller !== my || gen !== generation) return;
    if (res.status === 401 || res.status === 403) {
      await authFailed(res);
      return;
    }
    if (!res.ok || !res.body) {
      const error = await readError(res);
      const retryAfter = Number(res.headers.get("retry-after"));
      const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0;
      reconnectLater(st, gen, `Edge answered ${res.status}${error.code ? ` (${error.code})` : ""}`, wait);
      return;
    }

    st.state = "connected";
    updateStatus();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = core.createSseParser();
    let idle = null;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => my.abort(), IDLE_TIMEOUT_MS);
    };
    const onMessage = (m) => {
      if (!applyMessage(m)) return;
      // Only a stream that delivers data counts as healthy; a 200 that closes at once keeps backing off.
      st.attempt = 0;
      if (st.state !== "live") {
        st.state = "live";
        if (st.key) regionErrors.delete(st.key);
        updateStatus();
        // Draw now, not on the next frame: the status line must never say "Live" over tiles that
        // are not there yet (a busy or hidden tab can hold a frame back for a long time).
        render();
      }
    };
    armIdle();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        armIdle();
        for (const m of parser.push(value)) onMessage(m);
      }
      for (const m of parser.end()) onMessage(m);
    } catch {
      // aborted (idle, sign-out) or the connection broke: both end up below
    } finally {
      if (idle) clearTimeout(idle);
    }
    if (st.controller === my && gen === generation) reconnectLater(st, gen, "Stream interrupted");
  }

  // ---------- drawing ----------

  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  const STATE_LABEL = {
    starting: "Starting",
    ready: "Ready",
    leased: "Leased",
    recycling: "Recycling",
    failed: "Failed",
  };

  function tileHtml(p) {
    const leased = p.state === "leased";
    const label = leased
      ? `${p.name}: leased by ${p.tenant}, request ${p.requestId}`
      : `${p.name}: ${STATE_LABEL[p.state] ?? p.state}`;
    let sub = "";
    let body = "";
    if (leased) {
      const total = (p.leaseDurationSeconds ?? 0) * 1000;
      const ttl = p.ttlMs ?? 0;
      const warn = total > 0 && ttl < total / 3 ? " warn" : "";
      sub = `<span class="by">by <strong data-testid="pod-tenant">${esc(p.tenant)}</strong></span>`;
      body =
        `<dl class="kv">` +
        `<div class="wide"><dt>Request</dt><dd data-testid="pod-request" title="${esc(p.requestId)}"><code>${esc(short(p.requestId, 22))}</code></dd></div>` +
        `<div><dt>Age</dt><dd data-testid="pod-age">${esc(core.formatMs(p.ageMs))}</dd></div>` +
        `<div><dt>TTL</dt><dd data-testid="pod-ttl" class="ttl${warn}">${p.ttlMs === null ? "—" : `${Math.ceil(ttl / 1000)} s`}</dd></div>` +
        `</dl>` +
        (total > 0
          ? `<meter class="ttl-bar" min="0" max="${total}" low="${total / 3}" high="${(total * 2) / 3}" optimum="${total}" value="${ttl}" aria-label="Lease time left"></meter>`
          : "");
    } else {
      const hint = {
        starting: "waiting for readiness",
        ready: "free",
        recycling: "wiping / replacing",
        failed: "not usable",
      }[p.state];
      sub = `<span class="hint">${esc(hint ?? "")}</span>`;
      body = p.podIP ? `<p class="ip">${esc(p.podIP)}</p>` : "";
    }
    return (
      `<li class="tile s-${esc(p.state)}" data-testid="pod-tile" data-pod="${esc(p.name)}" data-state="${esc(p.state)}" aria-label="${esc(label)}">` +
      `<div class="pod-name" title="${esc(p.name)}">${esc(p.name)}</div>` +
      `<div class="tile-sub"><span class="badge" data-testid="pod-state">${esc(STATE_LABEL[p.state] ?? p.state)}</span>${sub}</div>${body}</li>`
    );
  }

  function headHtml(r, id) {
    const meta = [
      r.poolSize !== null ? `pool size ${r.poolSize}` : null,
      r.recycle ? `recycle: ${r.recycle}` : null,
      r.leader ? `leader ${short(r.leader, 20)}` : null,
      r.agents.length ? `${r.agents.length} agent${r.agents.length === 1 ? "" : "s"}` : null,
    ]
      .filter(Boolean)
      .map((m) => `<span>${esc(m)}</span>`)
      .join("");
    const t = r.totals;
    const stat = (key, label, value) =>
      `<div class="stat"><dt>${label}</dt><dd data-testid="total-${key}">${esc(value)}</dd></div>`;
    return (
      `<div class="region-head"><h2 id="${id}-h">Region <span class="region-name">${esc(r.region)}</span></h2><div class="meta">${meta}</div></div>` +
      `<dl class="totals" aria-label="Totals">` +
      stat("acquisitions", "Acquisitions", t.acquisitions) +
      stat("conflicts", "Lease conflicts", t.conflicts) +
      stat("queue-timeouts", "Queue timeouts", t.queueTimeouts) +
      stat("acquire-p50", "Acquire p50", core.formatMs(t.acquireP50Ms)) +
      stat("acquire-p99", "Acquire p99", core.formatMs(t.acquireP99Ms)) +
      `</dl>`
    );
  }

  function podsHtml(r, id) {
    const c = r.counts;
    const counts = ["ready", "leased", "starting", "recycling", "failed"]
      .filter((s) => c[s] > 0 || s === "ready" || s === "leased")
      .map((s) => `<span class="count s-${s}" data-testid="count-${s}">${c[s]} ${s}</span>`)
      .join("");
    return (
      `<div class="panel-head"><h3 id="${id}-pods">Pods</h3><div class="counts">${counts}</div></div>` +
      scaleHtml(r) +
      `<ul class="tiles" role="list" data-testid="pods">${r.pods.map(tileHtml).join("") || `<li class="muted">No pods reported.</li>`}</ul>`
    );
  }

  /** The leader's last scale decision and the pool's size over its recent decisions (a sparkline). */
  function scaleHtml(r) {
    const d = r.scale;
    if (!d) return "";
    const h = r.scaleHistory;
    const max = Math.max(1, ...h.map((x) => x.total));
    const pts = h.map(
      (x, i) => `${h.length > 1 ? (i * 100) / (h.length - 1) : 0},${20 - (x.total * 20) / max}`,
    );
    const line = `<svg class="spark" viewBox="0 0 100 20" width="120" height="20" aria-hidden="true"><polyline fill="none" stroke="currentColor" points="${pts.join(" ")}"/></svg>`;
    const what = d.create ? ` +${d.create}` : d.remove ? ` −${d.remove}` : "";
    const refusal = d.refusal
      ? ` <span class="pill bad" data-testid="scale-refusal">${esc(short(d.refusal, 80))}</span>`
      : "";
    return (
      `<p class="scale" data-testid="pool-scale">${line} <span data-testid="scale-reason">${esc(d.reason)}${esc(what)}</span>` +
      ` · ${d.free} free · ${d.held} held · ${d.starting} starting` +
      (d.unschedulable
        ? ` <span class="pill bad" data-testid="scale-unschedulable">${d.unschedulable} unschedulable</span>`
        : "") +
      ` · ${d.total} pods (wanted ${d.wanted})${refusal}</p>`
    );
  }

  function queueHtml(r, id) {
    const waiters = r.queue.waiters.length
      ? `<ol class="waiters">${r.queue.waiters
          .map(
            (w, i) =>
              `<li data-testid="queue-waiter" data-request-id="${esc(w.requestId)}"><span class="pos" aria-label="position">${i + 1}</span>` +
              `<span class="who"><strong>${esc(w.tenant || "—")}</strong><code title="${esc(w.requestId)}">${esc(short(w.requestId, 22))}</code></span>` +
              `<span class="waited" data-testid="queue-waited" aria-label="waited">${esc(core.formatMs(w.waitedMs))}</span></li>`,
          )
          .join("")}</ol>`
      : `<p class="muted">Nobody is waiting.</p>`;
    const tenants = r.queueByTenant.length
      ? `<p class="muted" data-testid="queue-by-tenant">${r.queueByTenant.map((t) => `${esc(t.tenant || "—")}: ${t.depth}`).join(" · ")}</p>`
      : "";
    return (
      `<div class="panel-head"><h3 id="${id}-queue">Queue</h3>` +
      `<span class="depth" aria-label="Queue depth"><span data-testid="queue-depth">${r.queue.depth}</span> waiting</span></div>${tenants}${waiters}`
    );
  }

  function timelineHtml(r, id, fresh) {
    const rows = r.executions.length
      ? r.executions
          .map((x) => {
            const exit =
              x.status === "running"
                ? `<span class="pill run">running</span>`
                : x.timedOut
                  ? `<span class="pill bad">timed out</span>`
                  : x.exitCode === 0
                    ? `<span class="pill ok">0</span>`
                    : `<span class="pill bad">${esc(x.exitCode ?? "—")}</span>`;
            return (
              `<tr data-testid="timeline-row" data-request-id="${esc(x.requestId)}" data-status="${x.status}"${fresh(x.key) ? ` class="new"` : ""}>` +
              `<td><time>${esc(new Date(x.startedAtMs).toLocaleTimeString())}</time></td>` +
              `<td><code title="${esc(x.requestId)}">${esc(short(x.requestId, 18))}</code></td>` +
              `<td>${esc(x.tenant || "—")}</td><td class="pod">${esc(x.pod || "—")}</td>` +
              `<td class="cmd"><code title="${esc(x.commandPreview)}">${esc(x.commandPreview || "—")}</code></td>` +
              `<td data-testid="timeline-exit">${exit}</td>` +
              `<td class="num">${esc(core.formatMs(x.durationMs))}</td><td class="num">${esc(core.formatMs(x.queueMs))}</td></tr>`
            );
          })
          .join("")
      : `<tr class="empty-row"><td colspan="8">No executions yet: they appear here as they run.</td></tr>`;
    return (
      `<div class="panel-head"><h3 id="${id}-tl">Recent executions</h3></div>` +
      `<div class="table-wrap"><table data-testid="timeline" aria-labelledby="${id}-tl"><thead><tr><th scope="col">Started</th><th scope="col">Request</th><th scope="col">Tenant</th><th scope="col">Pod</th>` +
      `<th scope="col">Command</th><th scope="col">Exit</th><th scope="col" class="num">Duration</th><th scope="col" class="num">Queue wait</th></tr></thead>` +
      `<tbody>${rows}</tbody></table></div>`
    );
  }

  function sandboxesHtml(r, id) {
    const list = r.sandboxes ?? [];
    const rows = list.length
      ? list
          .map(
            (b) =>
              `<tr data-testid="sandbox-row" data-sandbox-id="${esc(b.id)}">` +
              `<td><code title="${esc(b.id)}">${esc(short(b.id, 28))}</code>${b.name ? ` <span class="muted">${esc(b.name)}</span>` : ""}</td>` +
              `<td>${esc(b.tenant || "—")}</td><td class="pod">${esc(b.pod || "—")}</td>` +
              `<td class="num" data-testid="sandbox-idle">${esc(core.formatMs(Math.max(0, b.idleLeftMs)))}</td>` +
              `<td class="cmd"><code title="${esc(b.lastCommand ?? "")}">${esc(b.lastCommand ?? "—")}</code></td></tr>`,
          )
          .join("")
      : `<tr class="empty-row"><td colspan="5">No sandboxes: POST /v1/sandboxes creates one.</td></tr>`;
    return (
      `<div class="panel-head"><h3 id="${id}-sb">Sandboxes</h3><span class="depth"><span data-testid="sandbox-count">${list.length}</span> live</span></div>` +
      `<div class="table-wrap"><table data-testid="sandboxes" aria-labelledby="${id}-sb"><thead><tr><th scope="col">Sandbox</th><th scope="col">Tenant</th><th scope="col">Pod</th>` +
      `<th scope="col" class="num">Idle timeout in</th><th scope="col">Last command</th></tr></thead><tbody>${rows}</tbody></table></div>`
    );
  }

  /** One region's DOM: built once, then each part is redrawn only when its HTML changes. */
  function regionSlot(r) {
    const id = `region-${r.region.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    const section = document.createElement("section");
    section.className = "region";
    section.dataset.testid = "region";
    section.dataset.region = r.region;
    section.setAttribute("aria-labelledby", `${id}-h`);
    section.innerHTML =
      `<div data-part="head"></div><div class="cols">` +
      `<section class="panel pods" data-part="pods" aria-labelledby="${id}-pods"></section>` +
      `<section class="panel queue" data-part="queue" data-testid="queue" aria-labelledby="${id}-queue"></section></div>` +
      `<section class="panel sandboxes" data-part="sandboxes" aria-labelledby="${id}-sb"></section>` +
      `<section class="panel timeline" data-part="timeline" aria-labelledby="${id}-tl"></section>`;
    const part = (name) => ({ el: section.querySelector(`[data-part="${name}"]`), html: "" });
    return {
      id,
      el: section,
      parts: {
        head: part("head"),
        pods: part("pods"),
        queue: part("queue"),
        sandboxes: part("sandboxes"),
        timeline: part("timeline"),
      },
      seenExec: new Set(),
      timelinePlain: "",
    };
  }

  function draw(part, html) {
    // Redraw only what changed, so text selection and scrolling survive quiet seconds.
    if (part.html === html) return;
    part.el.innerHTML = html;
    part.html = html;
  }

  function render() {
    const v = core.view(state, Date.now());
    els.empty.hidden = v.regions.length > 0 || !els.auth.hidden;
    const seen = new Set();
    for (const r of v.regions) {
      seen.add(r.region);
      let slot = rendered.get(r.region);
      if (!slot) {
        slot = regionSlot(r);
        els.regions.appendChild(slot.el);
        rendered.set(r.region, slot);
      }
      draw(slot.parts.head, headHtml(r, slot.id));
      draw(slot.parts.pods, podsHtml(r, slot.id));
      draw(slot.parts.queue, queueHtml(r, slot.id));
      draw(slot.parts.sandboxes, sandboxesHtml(r, slot.id));
      // Rows not drawn before flash once; the first draw after connecting flashes nothing.
      const first = slot.seenExec.size === 0 && slot.parts.timeline.html === "";
      const fresh = (key) => !first && !slot.seenExec.has(key);
      const plain = timelineHtml(r, slot.id, () => false);
      if (plain !== slot.timelinePlain) {
        draw(slot.parts.timeline, timelineHtml(r, slot.id, fresh));
        slot.timelinePlain = plain;
        slot.seenExec = new Set(r.executions.map((x) => x.key));
      }
    }
    for (const [name, slot] of rendered) {
      const st = streams.get(name) ?? streams.get("");
      // What is shown for a region whose stream is down is the last known state: say so.
      slot.el.dataset.stale =
        lastMessageAt !== null && st !== undefined && st.state !== "live" ? "true" : "false";
      if (!seen.has(name)) {
        slot.el.remove();
        rendered.delete(name);
      }
    }
    const errors = [...regionErrors]
      .map(([r, m]) => `<li>Region <strong>${esc(r)}</strong> is unavailable: ${esc(m)}</li>`)
      .join("");
    const errorsHtml = errors ? `<ul>${errors}</ul>` : "";
    if (errorsHtml !== regionErrorsHtml) {
      els.regionErrors.innerHTML = errorsHtml;
      regionErrorsHtml = errorsHtml;
    }
    els.regionErrors.hidden = errorsHtml === "";
  }

  // ---------- wiring ----------

  function useToken(t) {
    token = t;
    storeToken(t);
    start();
  }

  els.login.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = els.tokenInput.value.trim();
    if (!t) {
      showAuth("no_token", AUTH_MESSAGES.no_token);
      return;
    }
    els.tokenInput.value = "";
    useToken(t);
  });
  els.signout.addEventListener("click", () => {
    stopAll();
    token = null;
    storeToken(null);
    setStatus("signed-out", "Signed out");
    showAuth("no_token", AUTH_MESSAGES.no_token);
  });
  window.addEventListener("hashchange", () => {
    const t = takeTokenFromFragment();
    if (t) useToken(t);
  });

  if (new URLSearchParams(location.search).has("token")) {
    // Never used: a query string ends up in access logs and browser history.
    els.notice.hidden = false;
    els.notice.textContent =
      "A token in the query string (?token=) is ignored because URLs with query strings end up in logs. Use #token=… or the sign-in box.";
  }

  token = takeTokenFromFragment();
  if (token) storeToken(token);
  else token = readStoredToken();
  setInterval(() => {
    updateStatus();
    scheduleRender();
  }, 1000);
  render();
  start();
}

import { formatMs, type PodTileView, type RegionView, type SandboxTileView } from "../view.ts";

/*
 * Drawing the view model. The HTML of each part is a pure function of a RegionView (unit-tested
 * in Node); `createRenderer` keeps one DOM slot per region and rewrites a part only when its HTML
 * changed, so text selection and scrolling survive quiet seconds. Every value is escaped.
 */

export const esc = (v: unknown): string =>
  String(v ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

export const short = (id: string | null | undefined, n = 12): string =>
  id && id.length > n ? `${id.slice(0, n)}…` : id || "—";

const STATE_LABEL: Record<string, string> = {
  starting: "Starting",
  ready: "Ready",
  leased: "Leased",
  recycling: "Recycling",
  failed: "Failed",
};

const HINT: Record<string, string> = {
  starting: "waiting for readiness",
  ready: "free",
  recycling: "wiping / replacing",
  failed: "not usable",
};

export function tileHtml(p: PodTileView): string {
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
      `<div><dt>Age</dt><dd data-testid="pod-age">${esc(formatMs(p.ageMs))}</dd></div>` +
      `<div><dt>TTL</dt><dd data-testid="pod-ttl" class="ttl${warn}">${p.ttlMs === null ? "—" : `${Math.ceil(ttl / 1000)} s`}</dd></div>` +
      `</dl>` +
      (total > 0
        ? `<meter class="ttl-bar" min="0" max="${total}" low="${total / 3}" high="${(total * 2) / 3}" optimum="${total}" value="${ttl}" aria-label="Lease time left"></meter>`
        : "");
  } else if (p.failure) {
    sub = `<span class="hint" data-testid="pod-failure" title="${esc(p.failure)}">${esc(short(p.failure, 80))}</span>`;
    body = p.podIP ? `<p class="ip">${esc(p.podIP)}</p>` : "";
  } else {
    sub = `<span class="hint">${esc(HINT[p.state] ?? "")}</span>`;
    body = p.podIP ? `<p class="ip">${esc(p.podIP)}</p>` : "";
  }
  return (
    `<li class="tile s-${esc(p.state)}" data-testid="pod-tile" data-pod="${esc(p.name)}" data-state="${esc(p.state)}" aria-label="${esc(label)}">` +
    `<div class="pod-name" title="${esc(p.name)}">${esc(p.name)}</div>` +
    `<div class="tile-sub"><span class="badge" data-testid="pod-state">${esc(STATE_LABEL[p.state] ?? p.state)}</span>${sub}</div>${body}</li>`
  );
}

export function headHtml(r: RegionView, id: string): string {
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
  const stat = (key: string, label: string, value: unknown) =>
    `<div class="stat"><dt>${label}</dt><dd data-testid="total-${key}">${esc(value)}</dd></div>`;
  return (
    `<div class="region-head"><h2 id="${id}-h">Region <span class="region-name">${esc(r.region)}</span></h2><div class="meta">${meta}</div></div>` +
    `<dl class="totals" aria-label="Totals">` +
    stat("acquisitions", "Acquisitions", t.acquisitions) +
    stat("conflicts", "Lease conflicts", t.conflicts) +
    stat("queue-timeouts", "Queue timeouts", t.queueTimeouts) +
    stat("acquire-p50", "Acquire p50", formatMs(t.acquireP50Ms)) +
    stat("acquire-p99", "Acquire p99", formatMs(t.acquireP99Ms)) +
    `</dl>`
  );
}

export function podsHtml(r: RegionView, id: string): string {
  const c = r.counts;
  const counts = (["ready", "leased", "starting", "recycling", "failed"] as const)
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
export function scaleHtml(r: RegionView): string {
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

export function queueHtml(r: RegionView, id: string): string {
  const waiters = r.queue.waiters.length
    ? `<ol class="waiters">${r.queue.waiters
        .map(
          (w, i) =>
            `<li data-testid="queue-waiter" data-request-id="${esc(w.requestId)}"><span class="pos" aria-label="position">${i + 1}</span>` +
            `<span class="who"><strong>${esc(w.tenant || "—")}</strong><code title="${esc(w.requestId)}">${esc(short(w.requestId, 22))}</code></span>` +
            `<span class="waited" data-testid="queue-waited" aria-label="waited">${esc(formatMs(w.waitedMs))}</span></li>`,
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

/** `fresh(key)`: rows not drawn before, which flash once. */
export function timelineHtml(r: RegionView, id: string, fresh: (key: string) => boolean): string {
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
            `<td class="num">${esc(formatMs(x.durationMs))}</td><td class="num">${esc(formatMs(x.queueMs))}</td></tr>`
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

/** The egress feed: each connection through an agent's proxy as it ends, newest first. */
export function egressHtml(r: RegionView, id: string): string {
  if (r.egress.length === 0) return "";
  const rows = r.egress
    .map(
      (x) =>
        `<tr data-testid="egress-row" data-decision="${x.decision}">` +
        `<td>${x.decision === "allowed" ? "allowed" : "<strong>denied</strong>"}</td>` +
        `<td><code>${esc(x.host)}:${esc(String(x.port))}</code></td><td>${esc(x.tenant || "—")}</td>` +
        `<td><code title="${esc(x.sandboxId ?? "")}">${esc(x.sandboxId ? short(x.sandboxId, 28) : "—")}</code></td>` +
        `<td>${esc(x.reason ?? "")}</td><td class="num">${esc(String(x.bytes))}</td></tr>`,
    )
    .join("");
  return (
    `<div class="panel-head"><h3 id="${id}-eg">Egress</h3><span class="depth">last ${r.egress.length}</span></div>` +
    `<div class="table-wrap"><table data-testid="egress" aria-labelledby="${id}-eg"><thead><tr><th scope="col">Decision</th><th scope="col">Destination</th>` +
    `<th scope="col">Tenant</th><th scope="col">Sandbox / request</th><th scope="col">Why</th><th scope="col" class="num">Bytes</th></tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

export function sandboxesHtml(r: RegionView, id: string): string {
  const list = r.sandboxes;
  const rows = list.length
    ? list
        .map(
          (b) =>
            `<tr data-testid="sandbox-row" data-sandbox-id="${esc(b.id)}">` +
            `<td><code title="${esc(b.id)}">${esc(short(b.id, 28))}</code>${b.name ? ` <span class="muted">${esc(b.name)}</span>` : ""}</td>` +
            `<td>${esc(b.tenant || "—")}</td><td class="pod">${esc(b.pod || "—")}</td>` +
            `<td class="num" data-testid="sandbox-idle">${esc(formatMs(Math.max(0, b.idleLeftMs)))}</td>` +
            `<td class="cmd"><code title="${esc(b.lastCommand ?? "")}">${esc(b.lastCommand ?? "—")}</code></td>` +
            `${processesCell(b)}${linksCell(b)}</tr>`,
        )
        .join("")
    : `<tr class="empty-row"><td colspan="7">No sandboxes: POST /v1/sandboxes creates one.</td></tr>`;
  return (
    `<div class="panel-head"><h3 id="${id}-sb">Sandboxes</h3><span class="depth"><span data-testid="sandbox-count">${list.length}</span> live</span></div>` +
    `<div class="table-wrap"><table data-testid="sandboxes" aria-labelledby="${id}-sb"><thead><tr><th scope="col">Sandbox</th><th scope="col">Tenant</th><th scope="col">Pod</th>` +
    `<th scope="col" class="num">Idle timeout in</th><th scope="col">Last command</th><th scope="col">Processes</th><th scope="col">Port links</th></tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

/** A sandbox's running processes: pid and command each, with how long it has run. */
function processesCell(b: SandboxTileView): string {
  const items = b.processes.map(
    (p) =>
      `<li data-testid="sandbox-process" data-pid="${p.pid}"><code title="${esc(p.commandPreview)}">${p.pid} ${esc(short(p.commandPreview, 40))}</code>` +
      `${p.tty ? ' <span class="muted">tty</span>' : ""} <span class="muted">${esc(formatMs(p.runningMs))}</span></li>`,
  );
  return `<td class="cmd" data-testid="sandbox-processes">${items.length ? `<ul class="procs">${items.join("")}</ul>` : "—"}</td>`;
}

/** A sandbox's open port links: port, private or public, and how long each has left (never a URL: no token here). */
function linksCell(b: SandboxTileView): string {
  const items = b.links.map(
    (l) =>
      `<li data-testid="sandbox-link" data-link-id="${esc(l.linkId)}" data-port="${l.port}"><code title="${esc(l.linkId)}">:${l.port}</code>` +
      ` <span class="muted">${l.public ? "public" : "private"}, ${esc(formatMs(l.expiresInMs))} left</span></li>`,
  );
  return `<td class="cmd" data-testid="sandbox-links">${items.length ? `<ul class="procs">${items.join("")}</ul>` : "—"}</td>`;
}

/** The regions /v1/pool could not reach (empty when all are up). */
export function regionErrorsHtml(errors: ReadonlyMap<string, string>): string {
  const items = [...errors]
    .map(([r, m]) => `<li>Region <strong>${esc(r)}</strong> is unavailable: ${esc(m)}</li>`)
    .join("");
  return items ? `<ul>${items}</ul>` : "";
}

/** A DOM id for a region (region names are the operator's: anything else becomes `_`). */
export const regionId = (region: string): string => `region-${region.replace(/[^A-Za-z0-9_-]/g, "_")}`;

interface Part {
  el: Element;
  html: string;
}

interface Slot {
  id: string;
  el: HTMLElement;
  parts: Record<"head" | "pods" | "queue" | "sandboxes" | "timeline", Part>;
  seenExec: Set<string>;
  timelinePlain: string;
}

function regionSlot(region: string): Slot {
  const id = regionId(region);
  const section = document.createElement("section");
  section.className = "region";
  section.dataset.testid = "region";
  section.dataset.region = region;
  section.setAttribute("aria-labelledby", `${id}-h`);
  section.innerHTML =
    `<div data-part="head"></div><div class="cols">` +
    `<section class="panel pods" data-part="pods" aria-labelledby="${id}-pods"></section>` +
    `<section class="panel queue" data-part="queue" data-testid="queue" aria-labelledby="${id}-queue"></section></div>` +
    `<section class="panel sandboxes" data-part="sandboxes" aria-labelledby="${id}-sb"></section>` +
    `<section class="panel timeline" data-part="timeline" aria-labelledby="${id}-tl"></section>`;
  const part = (name: string): Part => ({
    el: section.querySelector(`[data-part="${name}"]`) as Element,
    html: "",
  });
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

function draw(part: Part, html: string): void {
  if (part.html === html) return;
  part.el.innerHTML = html;
  part.html = html;
}

export interface Frame {
  regions: RegionView[];
  /** Whether what a region shows is the last known state of a stream that is down. */
  stale(region: string): boolean;
  regionErrors: ReadonlyMap<string, string>;
}

/** Draws frames into `#regions` and `#region-errors`; returns the draw function. */
export function createRenderer(els: { regions: HTMLElement; regionErrors: HTMLElement }): (f: Frame) => void {
  const rendered = new Map<string, Slot>();
  let errorsHtml = "";
  return (f) => {
    const seen = new Set<string>();
    for (const r of f.regions) {
      seen.add(r.region);
      let slot = rendered.get(r.region);
      if (!slot) {
        slot = regionSlot(r.region);
        els.regions.appendChild(slot.el);
        rendered.set(r.region, slot);
      }
      draw(slot.parts.head, headHtml(r, slot.id));
      draw(slot.parts.pods, podsHtml(r, slot.id));
      draw(slot.parts.queue, queueHtml(r, slot.id));
      // The egress feed shares the sandboxes' panel: one part, so the region's layout is unchanged.
      draw(slot.parts.sandboxes, sandboxesHtml(r, slot.id) + egressHtml(r, slot.id));
      // Rows not drawn before flash once; the first draw (the history the page opens with) flashes nothing.
      const s = slot;
      const first = s.seenExec.size === 0 && s.parts.timeline.html === "";
      const plain = timelineHtml(r, s.id, () => false);
      if (plain !== s.timelinePlain) {
        draw(
          s.parts.timeline,
          timelineHtml(r, s.id, (key) => !first && !s.seenExec.has(key)),
        );
        s.timelinePlain = plain;
        s.seenExec = new Set(r.executions.map((x) => x.key));
      }
    }
    for (const [name, slot] of rendered) {
      slot.el.dataset.stale = f.stale(name) ? "true" : "false";
      if (!seen.has(name)) {
        slot.el.remove();
        rendered.delete(name);
      }
    }
    const html = regionErrorsHtml(f.regionErrors);
    if (html !== errorsHtml) {
      els.regionErrors.innerHTML = html;
      errorsHtml = html;
    }
    els.regionErrors.hidden = html === "";
  };
}

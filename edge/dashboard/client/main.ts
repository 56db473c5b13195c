import { toMessage } from "../decode.ts";
import type { DashboardClientOptions } from "../page.ts";
import { initialState, reduce } from "../reducer.ts";
import { view } from "../view.ts";
import { type ApiError, PoolConnection, statusLine } from "./connection.ts";
import { createRenderer } from "./render.ts";

/*
 * The page's entry (bundled by build.ts into the one inline script): the token, the status line
 * and the sign-in box, and the wiring of connection → decode → reducer → view → render.
 * Browser tests (test/browser/dashboard*.test.ts) run it in Chromium.
 */

const TOKEN_KEY = "pi-sandbox-dashboard-token";

const AUTH_MESSAGES: Record<string, string> = {
  no_token:
    "No token yet. Paste an admin token (scope sandbox:admin) below, or open this page as /dashboard#token=… .",
  token_expired: "Your token has expired. Paste a fresh admin token to reconnect.",
  insufficient_scope:
    "This token is valid but lacks the sandbox:admin scope needed to watch the pool. Use an admin token.",
  invalid_token: "The edge rejected this token as invalid. Check that you pasted the whole token.",
  unauthenticated: "The edge did not accept this token. Paste a valid admin token.",
  missing_tenant: "This token names no tenant, so the edge refused it. Use an admin token.",
};

function readStoredToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(t: string | null): void {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives only in memory for this page
  }
}

/** `#token=…` is taken once and removed from the address bar (and so from history). */
function takeTokenFromFragment(): string | null {
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

function main(): void {
  const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
  const els = {
    conn: $("conn"),
    connText: $("conn-text"),
    auth: $("auth"),
    authMessage: $("auth-message"),
    login: $<HTMLFormElement>("login"),
    tokenInput: $<HTMLInputElement>("token"),
    signout: $("signout"),
    regions: $("regions"),
    empty: $("empty"),
    notice: $("notice"),
    regionErrors: $("region-errors"),
  };
  const opts = JSON.parse($("dashboard-config").textContent ?? "{}") as DashboardClientOptions;

  let state = initialState();
  let token: string | null = null;
  let renderQueued = false;
  let lastMessageAt: number | null = null;
  const draw = createRenderer(els);

  function setStatus(kind: string, text: string): void {
    els.conn.dataset.state = kind;
    els.connText.textContent = text;
    document.body.dataset.conn = kind;
  }

  function updateStatus(): void {
    const s = statusLine(connection.streams, Date.now());
    if (s) setStatus(s.kind, s.text);
  }

  function render(): void {
    els.empty.hidden = Object.keys(state.regions).length > 0 || !els.auth.hidden;
    draw({
      regions: view(state, Date.now()).regions,
      stale: (region) => {
        const st = connection.streamOf(region);
        return lastMessageAt !== null && st !== undefined && st.state !== "live";
      },
      regionErrors: connection.regionErrors,
    });
  }

  function scheduleRender(): void {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  function showAuth(code: string, message: string): void {
    els.auth.hidden = false;
    els.auth.dataset.code = code;
    els.authMessage.textContent = message;
    els.signout.hidden = true;
    render();
    setTimeout(() => els.tokenInput.focus(), 0);
  }

  function hideAuth(): void {
    els.auth.hidden = true;
    els.auth.dataset.code = "";
    els.authMessage.textContent = "";
    els.signout.hidden = false;
  }

  function signOut(kind: string, text: string, code: string, message: string): void {
    connection.stop();
    token = null;
    storeToken(null);
    setStatus(kind, text);
    showAuth(code, message);
  }

  const connection = new PoolConnection(opts, {
    message(m) {
      const msg = toMessage(m);
      if (!msg) return false;
      state = reduce(state, msg, Date.now());
      lastMessageAt = Date.now();
      scheduleRender();
      return true;
    },
    changed() {
      updateStatus();
      // Draw now, not on the next frame: the status line must never say "Live" over tiles that
      // are not there yet (a busy or hidden tab can hold a frame back for a long time).
      render();
    },
    authFailed(status: number, error: ApiError) {
      const code = error.code || (status === 403 ? "insufficient_scope" : "unauthenticated");
      signOut(
        "signed-out",
        status === 403 ? "Not authorised" : "Signed out",
        code,
        AUTH_MESSAGES[code] ?? `${error.message} (${code})`,
      );
    },
  });

  function start(): void {
    if (!token) {
      connection.stop();
      setStatus("signed-out", "Not connected");
      showAuth("no_token", AUTH_MESSAGES.no_token as string);
      return;
    }
    const mine = token;
    setStatus("connecting", "Connecting…");
    void connection.start(mine).then(() => {
      // Signed out or replaced while the regions were being discovered: that call owns the page now.
      if (token !== mine || connection.streams.length === 0) return;
      hideAuth();
      updateStatus();
      scheduleRender();
    });
  }

  function useToken(t: string): void {
    token = t;
    storeToken(t);
    start();
  }

  els.login.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = els.tokenInput.value.trim();
    if (!t) {
      showAuth("no_token", AUTH_MESSAGES.no_token as string);
      return;
    }
    els.tokenInput.value = "";
    useToken(t);
  });
  els.signout.addEventListener("click", () =>
    signOut("signed-out", "Signed out", "no_token", AUTH_MESSAGES.no_token as string),
  );
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

main();

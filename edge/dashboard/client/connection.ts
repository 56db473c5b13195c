import { readSse, type SseMessage } from "../../../shared/sse.ts";

/*
 * The page's connection to the edge: `GET /v1/pool` names the regions (and gives their snapshots
 * at once); then one SSE stream per region, `/v1/events?region=…`, each reconnecting on its own
 * with jittered backoff. If /v1/pool is unavailable, one stream to `/v1/events` (the edge's
 * nearest region) is used instead. `fetch` + a reader, since EventSource cannot send an
 * Authorization header; the events are parsed by the project's one codec (shared/sse.ts).
 *
 * No DOM here: it reports through `ConnectionEvents`, so the unit tests drive it with real
 * Responses in Node.
 */

export type StreamState = "connecting" | "connected" | "live" | "reconnecting";

export interface StreamStatus {
  /** The region, or "" for the edge's default stream. */
  key: string;
  state: StreamState;
  /** Why it is reconnecting. */
  reason: string;
  /** Local ms of the next attempt while reconnecting. */
  until: number;
}

export interface ApiError {
  code: string;
  message: string;
}

export interface ConnectionEvents {
  /** A snapshot from /v1/pool or a message of a stream: true when it was usable data. */
  message(m: Pick<SseMessage, "event" | "data">): boolean;
  /** Stream states or region errors changed. */
  changed(): void;
  /** 401/403: every stream is stopped, since retrying cannot help until the token changes. */
  authFailed(status: number, error: ApiError): void;
}

export interface ConnectionOptions {
  /** Same-origin path of the SSE stream (`?region=` is appended per region). */
  eventsPath: string;
  /** Same-origin path of the per-region pool overview that names the regions. */
  poolPath: string;
  fetch?: typeof fetch;
  connectTimeoutMs?: number;
  /** The agent pings every 15 s; three missed pings means the stream is dead even if TCP is not. */
  idleTimeoutMs?: number;
  maxBackoffMs?: number;
}

const DEFAULTS = { connectTimeoutMs: 15_000, idleTimeoutMs: 45_000, maxBackoffMs: 15_000 };

interface Stream extends StreamStatus {
  path: string;
  attempt: number;
  controller: AbortController | null;
  retryTimer: ReturnType<typeof setTimeout> | null;
}

/** Jittered exponential backoff: 500 ms doubling per attempt, capped, 50–100 % of that. */
export function backoffMs(attempt: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + random * 0.5));
}

/** The edge's error envelope, or the status line when the body is not one. */
export async function readError(res: Response): Promise<ApiError> {
  try {
    const body: unknown = await res.json();
    if (typeof body === "object" && body !== null && "error" in body) {
      const e = (body as { error: unknown }).error;
      if (typeof e === "object" && e !== null) {
        const { code, message } = e as { code?: unknown; message?: unknown };
        if (typeof code === "string") return { code, message: typeof message === "string" ? message : code };
      }
    }
  } catch {
    // not the envelope: fall back to the status line
  }
  return { code: "", message: res.statusText || `HTTP ${res.status}` };
}

/** One status line for all streams: live only when every region's stream is. */
export function statusLine(
  streams: readonly StreamStatus[],
  nowMs: number,
): { kind: "connecting" | "live" | "reconnecting"; text: string } | null {
  if (streams.length === 0) return null;
  const named = (st: StreamStatus, text: string) =>
    streams.length > 1 && st.key ? `${st.key}: ${text}` : text;
  const down = streams.find((st) => st.state === "reconnecting");
  if (down) {
    const left = Math.max(0, Math.ceil((down.until - nowMs) / 1000));
    return {
      kind: "reconnecting",
      text: named(down, `${down.reason} — reconnecting${left > 0 ? ` in ${left} s` : ""}…`),
    };
  }
  if (streams.every((st) => st.state === "live")) {
    return { kind: "live", text: streams.length > 1 ? `Live · ${streams.length} regions` : "Live" };
  }
  const waiting = streams.find((st) => st.state !== "live") as StreamStatus;
  return {
    kind: "connecting",
    text: named(waiting, waiting.state === "connected" ? "Waiting for the snapshot…" : "Connecting…"),
  };
}

export class PoolConnection {
  readonly #opts: Required<Omit<ConnectionOptions, "fetch">>;
  readonly #fetch: typeof fetch;
  readonly #events: ConnectionEvents;
  readonly #streams = new Map<string, Stream>();
  /** Regions /v1/pool could not reach, with the edge's reason; cleared when their stream is live. */
  readonly regionErrors = new Map<string, string>();
  #token = "";
  /** Bumped by every start/stop: work of an older generation finds out and ends quietly. */
  #generation = 0;

  constructor(opts: ConnectionOptions, events: ConnectionEvents) {
    const { fetch: f, ...rest } = opts;
    this.#opts = { ...DEFAULTS, ...rest };
    this.#fetch = f ?? ((input, init) => fetch(input, init));
    this.#events = events;
  }

  get streams(): StreamStatus[] {
    return [...this.#streams.values()].map(({ key, state, reason, until }) => ({
      key,
      state,
      reason,
      until,
    }));
  }

  /** The stream that carries a region (the default stream carries every region it sends). */
  streamOf(region: string): StreamStatus | undefined {
    return this.#streams.get(region) ?? this.#streams.get("");
  }

  stop(): void {
    this.#generation += 1;
    for (const st of this.#streams.values()) this.#halt(st);
    this.#streams.clear();
  }

  /** Discover the regions, then open their streams. Resolves once the streams are started. */
  async start(token: string): Promise<void> {
    this.stop();
    this.#token = token;
    const gen = this.#generation;
    const regions = await this.#discover(gen);
    if (regions === "auth" || gen !== this.#generation) return;
    const targets =
      regions && regions.length > 0
        ? regions.map((r) => ({ key: r, path: `${this.#opts.eventsPath}?region=${encodeURIComponent(r)}` }))
        : [{ key: "", path: this.#opts.eventsPath }];
    for (const t of targets) {
      const st: Stream = {
        ...t,
        state: "connecting",
        reason: "",
        until: 0,
        attempt: 0,
        controller: null,
        retryTimer: null,
      };
      this.#streams.set(t.key, st);
      void this.#connect(st, gen);
    }
    this.#events.changed();
  }

  #headers(accept: string): Record<string, string> {
    return { Authorization: `Bearer ${this.#token}`, Accept: accept };
  }

  async #discover(gen: number): Promise<string[] | null | "auth"> {
    const discovery = new AbortController();
    const timer = setTimeout(() => discovery.abort(), this.#opts.connectTimeoutMs);
    try {
      const res = await this.#fetch(this.#opts.poolPath, {
        headers: this.#headers("application/json"),
        cache: "no-store",
        credentials: "omit",
        signal: discovery.signal,
      });
      if (gen !== this.#generation) return null;
      if (res.status === 401 || res.status === 403) {
        await this.#authFailed(res);
        return "auth";
      }
      const body: unknown = res.ok ? await res.json() : null;
      if (
        typeof body !== "object" ||
        body === null ||
        !Array.isArray((body as { regions?: unknown }).regions)
      )
        return null;
      const regions: string[] = [];
      this.regionErrors.clear();
      for (const r of (body as { regions: unknown[] }).regions) {
        if (typeof r !== "object" || r === null) continue;
        const { region, pool, error } = r as { region?: unknown; pool?: unknown; error?: ApiError };
        if (typeof region !== "string") continue;
        regions.push(region);
        if (pool) this.#events.message({ event: "snapshot", data: JSON.stringify(pool) });
        else if (error) this.regionErrors.set(region, `${error.message} (${error.code})`);
      }
      return regions;
    } catch {
      return null; // no region list: fall back to the edge's default stream
    } finally {
      clearTimeout(timer);
    }
  }

  async #authFailed(res: Response): Promise<void> {
    const error = await readError(res);
    this.stop();
    this.#events.authFailed(res.status, error);
  }

  #halt(st: Stream): void {
    if (st.retryTimer) clearTimeout(st.retryTimer);
    st.retryTimer = null;
    st.controller?.abort();
    st.controller = null;
  }

  #reconnectLater(st: Stream, gen: number, reason: string, minDelayMs = 0): void {
    this.#halt(st);
    const delay = Math.max(minDelayMs, backoffMs(st.attempt, this.#opts.maxBackoffMs, Math.random()));
    st.attempt += 1;
    st.state = "reconnecting";
    st.reason = reason;
    st.until = Date.now() + delay;
    st.retryTimer = setTimeout(() => void this.#connect(st, gen), delay);
    this.#events.changed();
  }

  async #connect(st: Stream, gen: number): Promise<void> {
    if (gen !== this.#generation) return;
    this.#halt(st);
    const my = new AbortController();
    st.controller = my;
    if (st.state !== "reconnecting") st.state = "connecting";
    const current = () => st.controller === my && gen === this.#generation;
    const connectTimer = setTimeout(() => my.abort(), this.#opts.connectTimeoutMs);
    let res: Response;
    try {
      res = await this.#fetch(st.path, {
        headers: this.#headers("text/event-stream"),
        cache: "no-store",
        credentials: "omit",
        signal: my.signal,
      });
    } catch {
      if (current()) this.#reconnectLater(st, gen, "Edge unreachable");
      return;
    } finally {
      clearTimeout(connectTimer);
    }
    if (!current()) return;
    if (res.status === 401 || res.status === 403) {
      await this.#authFailed(res);
      return;
    }
    if (!res.ok || !res.body) {
      const error = await readError(res);
      const retryAfter = Number(res.headers.get("retry-after"));
      const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 0;
      this.#reconnectLater(
        st,
        gen,
        `Edge answered ${res.status}${error.code ? ` (${error.code})` : ""}`,
        wait,
      );
      return;
    }

    st.state = "connected";
    this.#events.changed();
    // Any bytes (the agent's `: ping` comments too) prove the stream alive; readSse yields events only.
    let idle: ReturnType<typeof setTimeout> | null = null;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => my.abort(), this.#opts.idleTimeoutMs);
    };
    const watched = res.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, out) {
          armIdle();
          out.enqueue(chunk);
        },
      }),
    );
    armIdle();
    try {
      for await (const m of readSse(watched)) {
        if (!current()) break;
        if (!this.#events.message(m)) continue;
        // Only a stream that delivers data counts as healthy; a 200 that closes at once keeps backing off.
        st.attempt = 0;
        if (st.state !== "live") {
          st.state = "live";
          if (st.key) this.regionErrors.delete(st.key);
          this.#events.changed();
        }
      }
    } catch {
      // aborted (idle, sign-out) or the connection broke: both end up below
    } finally {
      if (idle) clearTimeout(idle);
    }
    if (current()) this.#reconnectLater(st, gen, "Stream interrupted");
  }
}

import { z } from "zod";

/**
 * Per-request timing spans, cheap enough to leave on: one small array per request, monotonic
 * `performance.now()` durations, and the standard `Server-Timing` header format
 * (`name;dur=1.23;desc="..."`) to carry them from the agent to the edge and from the edge to
 * the client. Both sides record into a `Spans`; neither sees the other's clock, only durations.
 */
/** The header in which an agent reports its own spans to the edge (Server-Timing syntax, unprefixed names). */
export const AGENT_TIMING_HEADER = "server-timing";

/**
 * The disjoint parts of a relayed `/v1/exec` on each side (each side's `*-total` spans them and
 * more); the README's Server-Timing table describes each.
 */
export const EDGE_EXEC_PARTS = [
  "edge-flood",
  "edge-auth",
  "edge-quota",
  "edge-region",
  "edge-sign",
  "edge-tunnel",
  "edge-body",
] as const;
export const AGENT_EXEC_PARTS = [
  "agent-verify",
  "agent-queue",
  "agent-acquire",
  "agent-exec",
  "agent-encode",
] as const;

export interface Span {
  name: string;
  /** Milliseconds. */
  dur: number;
  desc?: string;
}

/** What a Server-Timing metric name may be (an HTTP token); ours are short kebab-case words. */
const NAME = /^[a-z][a-z0-9-]{0,47}$/;
/** Descriptions we emit: plain words, nothing that needs quoting inside the quoted-string. */
const DESC = /^[\x20\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]{0,80}$/;
const MAX_SPANS = 32;
const MAX_HEADER_CHARS = 2048;

export class Spans {
  private readonly list: Span[] = [];
  readonly startedAt: number;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.startedAt = now();
  }

  /** Record a span measured elsewhere; names that could not travel in the header are dropped. */
  add(name: string, dur: number, desc?: string): void {
    if (!NAME.test(name) || !Number.isFinite(dur) || dur < 0 || this.list.length >= MAX_SPANS) return;
    this.list.push(desc !== undefined && DESC.test(desc) ? { name, dur, desc } : { name, dur });
  }

  /** Start a span now; the returned function ends it (once) and gives its duration. */
  start(name: string, desc?: string): () => number {
    const t0 = this.now();
    let done = false;
    return () => {
      const dur = this.now() - t0;
      if (!done) this.add(name, dur, desc);
      done = true;
      return dur;
    };
  }

  /** Time `fn` (sync or async) as one span, whether it resolves or throws. */
  async time<T>(name: string, fn: () => T | Promise<T>, desc?: string): Promise<T> {
    const end = this.start(name, desc);
    try {
      return await fn();
    } finally {
      end();
    }
  }

  /** Milliseconds since this recorder was made. */
  elapsed(): number {
    return this.now() - this.startedAt;
  }

  /** Spans recorded so far, in order. */
  get all(): readonly Span[] {
    return this.list;
  }

  /** Add spans from another hop with a prefix (`agent-`), e.g. parsed from its header. */
  merge(prefix: string, spans: readonly Span[]): void {
    for (const s of spans) this.add(`${prefix}${s.name}`, s.dur, s.desc);
  }
}

/** `Server-Timing` value: `name;dur=1.23;desc="…"` joined by `, `. */
export function formatServerTiming(spans: readonly Span[]): string {
  return spans
    .map((s) => `${s.name};dur=${round(s.dur)}${s.desc !== undefined ? `;desc="${s.desc}"` : ""}`)
    .join(", ");
}

const MetricSchema = z.object({
  name: z.string().regex(NAME),
  dur: z.number().finite().nonnegative().max(86_400_000),
  desc: z.string().regex(DESC).optional(),
});

/**
 * Parse a `Server-Timing` value of the form `formatServerTiming` writes. Another hop's header is
 * input like any other: anything malformed (bad name, bad number, too long, too many) gives `[]`,
 * never an exception, so a broken agent can only lose its own spans.
 */
export function parseServerTiming(header: string | null | undefined): Span[] {
  if (!header || header.length > MAX_HEADER_CHARS) return [];
  const parts = header.split(",");
  if (parts.length > MAX_SPANS) return [];
  const out: Span[] = [];
  for (const part of parts) {
    const m = /^\s*([^;\s]+)\s*;\s*dur=([0-9]+(?:\.[0-9]+)?)\s*(?:;\s*desc="([^"]*)")?\s*$/.exec(part);
    if (!m) return [];
    const parsed = MetricSchema.safeParse({
      name: m[1],
      dur: Number(m[2]),
      ...(m[3] !== undefined ? { desc: m[3] } : {}),
    });
    if (!parsed.success) return [];
    out.push(parsed.data.desc !== undefined ? parsed.data : { name: parsed.data.name, dur: parsed.data.dur });
  }
  return out;
}

/** Spans as one log field, with OpenTelemetry-style dotted names (`edge.auth`, `agent.exec`). */
export function spansForLog(spans: readonly Span[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of spans) out[s.name.replace("-", ".")] = round(s.dur);
  return out;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

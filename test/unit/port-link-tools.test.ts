import { describe, expect, it } from "vitest";
import type { PortLink, PortLinkCreateRequest } from "../../shared/api.ts";
import { ok } from "../../shared/errors.ts";
import { parseToolArgs } from "../../shared/tools/definitions.ts";
import {
  openPortLink,
  type PortLinkToolBackend,
  runPortLinkTool,
} from "../../shared/tools/port-link-tools.ts";

// open_port_link over a recording backend (the route itself is covered by the port link suites and
// the MCP suite against the stack): what reaches the route, what the model is told, bad input.

function recording(
  answer: (port: number, body: PortLinkCreateRequest) => ReturnType<PortLinkToolBackend["open"]>,
) {
  const calls: Array<{ port: number; body: PortLinkCreateRequest }> = [];
  const backend: PortLinkToolBackend = {
    open: (port, body) => {
      calls.push({ port, body });
      return answer(port, body);
    },
  };
  return { backend, calls };
}

const link = (port: number, body: PortLinkCreateRequest): PortLink => ({
  id: "pl-abcdefghij0123456789",
  port,
  public: body.public,
  createdAt: "2026-12-07T00:00:00.000Z",
  expiresAt: new Date(Date.parse("2026-12-07T00:00:00.000Z") + body.ttlSeconds * 1000).toISOString(),
  url: "https://pl-abcdefghij0123456789.edge.example/?pi_link=tok",
});

const signal = new AbortController().signal;

describe("open_port_link", () => {
  it("defaults: a private link for an hour; the answer has the URL and the expiry", async () => {
    const r = recording(async (port, body) => ok(link(port, body)));
    const out = await runPortLinkTool("open_port_link", { port: 8000 }, r.backend, signal);
    expect(r.calls).toEqual([{ port: 8000, body: { ttlSeconds: 3600, public: false } }]);
    expect(out).toEqual(
      ok({
        structured: {
          url: "https://pl-abcdefghij0123456789.edge.example/?pi_link=tok",
          expires_at: "2026-12-07T01:00:00.000Z",
          link_id: "pl-abcdefghij0123456789",
          port: 8000,
          public: false,
        },
        text:
          "private link to port 8000, until 2026-12-07T01:00:00.000Z:\n" +
          "https://pl-abcdefghij0123456789.edge.example/?pi_link=tok\n" +
          "(requests to it also need the user's API token)",
      }),
    );
  });

  it("ttl_seconds and public reach the route", async () => {
    const r = recording(async (port, body) => ok(link(port, body)));
    const out = await runPortLinkTool(
      "open_port_link",
      { port: 3000, ttl_seconds: 60, public: true },
      r.backend,
      signal,
    );
    expect(r.calls).toEqual([{ port: 3000, body: { ttlSeconds: 60, public: true } }]);
    expect(out.ok && out.value.text).toBe(
      "public link to port 3000, until 2026-12-07T00:01:00.000Z:\nhttps://pl-abcdefghij0123456789.edge.example/?pi_link=tok",
    );
  });

  it("bad input is refused before any call: a port outside 1-65535, a ttl out of range", () => {
    for (const [args, msg] of [
      [{ port: 0 }, "a port is 1-65535"],
      [{ port: 65_536 }, "a port is 1-65535"],
      [{ port: 80.5 }, "port"],
      [{ port: 80, ttl_seconds: 5 }, "ttl_seconds"],
      [{ port: 80, ttl_seconds: 86_401 }, "ttl_seconds"],
      [{}, "port"],
    ] as const) {
      const parsed = parseToolArgs(openPortLink, args);
      expect(parsed.ok, JSON.stringify(args)).toBe(false);
      if (!parsed.ok) expect(parsed.error).toContain(msg);
    }
  });

  it("the route's refusal is the tool's error, code and message as they came", async () => {
    const r = recording(async () => ({
      ok: false,
      error: { code: "port_not_allowed", message: "port 8080 is the sandbox's exec server", requestId: "r1" },
    }));
    const out = await runPortLinkTool("open_port_link", { port: 8080 }, r.backend, signal);
    expect(out).toEqual({
      ok: false,
      error: { code: "port_not_allowed", message: "port 8080 is the sandbox's exec server", requestId: "r1" },
    });
  });
});

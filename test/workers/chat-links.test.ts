import { describe, expect, it } from "vitest";
import type { EdgeConfig } from "../../edge/config.ts";
import { linkSigner, signResponseLinks, signStreamLinks } from "../../edge/routes/chat-links.ts";
import type { ChatEvent, ChatPortLink, ChatResponse } from "../../shared/api.ts";
import { portLinkKey, verifyPortLink } from "../../shared/port-link-token.ts";
import { encodeSse, encodeSseComment, parseSse } from "../../shared/sse.ts";
import { RELAY_PRIVATE_JWKS } from "./fixtures/test-keys.ts";

// The edge's rewrite of a chat turn's port links (chat's open_port_link): the agent reports a link
// without a URL; the edge signs it for the caller's tenant with the region's link key and adds `url`
// to the streamed `tool.result` and `done` events and to the JSON answer's toolCalls[]. Everything
// else passes through byte for byte.

const SID = "sb.eu-1.default.abcdefghij0123456789";
const LID = "pl-abcdefghij0123456789";
const EXPIRES = new Date(Date.now() + 600_000).toISOString();
const config = { regions: ["eu-1"], relayPrivateKeys: RELAY_PRIVATE_JWKS } as unknown as EdgeConfig;
const sign = linkSigner(config, "http://127.0.0.1:8787/v1/chat", "t1");
const link: ChatPortLink = { sandboxId: SID, linkId: LID, port: 8000, public: false, expiresAt: EXPIRES };

const response = (l?: ChatPortLink): ChatResponse => ({
  requestId: "r1",
  sessionId: "s1",
  reply: "opened",
  toolCalls: [
    { id: "c0", command: "start_process x", exitCode: 0, durationMs: 1, truncated: false, timedOut: false },
    {
      id: "c1",
      command: "open_port_link 8000",
      exitCode: 0,
      durationMs: 1,
      truncated: false,
      timedOut: false,
      ...(l ? { link: l } : {}),
    },
  ],
});

/** The URL's token verifies with the region's key and grants exactly the link, for tenant t1. */
async function expectSignedFor(url: string | undefined, l: ChatPortLink): Promise<void> {
  expect(url).toMatch(new RegExp(`^http://${l.linkId}\\.localhost:8787/\\?pi_link=`));
  const token = new URL(url!).searchParams.get("pi_link")!;
  const claims = await verifyPortLink(await portLinkKey(RELAY_PRIVATE_JWKS["eu-1"]!.d!), token);
  expect(claims).toEqual({
    ok: true,
    value: {
      lid: l.linkId,
      sid: l.sandboxId,
      tid: "t1",
      port: l.port,
      pub: l.public,
      exp: Math.floor(Date.parse(l.expiresAt) / 1000),
    },
  });
}

function streamOf(text: string, cut: number[]): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cut, bytes.length]) {
    parts.push(bytes.slice(at, c));
    at = c;
  }
  return new ReadableStream({
    start(controller) {
      for (const p of parts) controller.enqueue(p);
      controller.close();
    },
  });
}

const event = (e: ChatEvent) => encodeSse({ event: e.type, data: JSON.stringify(e) });

describe("chat port links at the edge", () => {
  it("a stream's tool.result and done get the signed URL; every other block passes unchanged", async () => {
    const before =
      event({ type: "sandbox.acquired", pod: "p1", sandboxId: SID }) +
      encodeSseComment("ping") +
      event({ type: "tool.call", id: "c1", command: "open_port_link 8000" });
    const result = {
      type: "tool.result",
      id: "c1",
      exitCode: 0,
      durationMs: 1,
      truncated: false,
      timedOut: false,
      // Whatever URL the agent might send is replaced: only the edge signs.
      link: { ...link, url: "http://evil.example/" },
    } as ChatEvent;
    const delta = event({ type: "assistant.delta", text: 'a "link" in the text' });
    const wire = before + event(result) + delta + event({ type: "done", response: response(link) });
    // Cut mid-event and mid-UTF-8 nowhere special: the splitter reassembles whole blocks.
    const out = await new Response(
      signStreamLinks(streamOf(wire, [7, before.length + 13, wire.length - 40]), sign),
    ).text();

    expect(out.startsWith(before)).toBe(true);
    expect(out).toContain(delta);
    const events = parseSse(out).map((m) => JSON.parse(m.data) as ChatEvent);
    expect(events.map((e) => e.type)).toEqual([
      "sandbox.acquired",
      "tool.call",
      "tool.result",
      "assistant.delta",
      "done",
    ]);
    const signed = (events[2] as { link?: ChatPortLink }).link;
    await expectSignedFor(signed?.url, link);
    const done = (events[4] as Extract<ChatEvent, { type: "done" }>).response;
    expect(done.toolCalls[1]?.link).toEqual(signed);
    expect(done.toolCalls[0]).toEqual(response().toolCalls[0]);
  });

  it("a JSON answer's toolCalls[] get the URL; an answer without links is left alone (undefined)", async () => {
    expect(await signResponseLinks(response(), sign)).toBeUndefined();
    const signed = (await signResponseLinks(response({ ...link, public: true }), sign)) as ChatResponse;
    await expectSignedFor(signed.toolCalls[1]?.link?.url, { ...link, public: true });
    expect(signed.reply).toBe("opened");
  });

  it("a malformed link is dropped, and a sandbox of a region this edge does not serve gets no URL", async () => {
    const bad = { ...response(), toolCalls: [{ ...response().toolCalls[1], link: { linkId: "nope" } }] };
    const dropped = (await signResponseLinks(bad, sign)) as ChatResponse;
    expect(JSON.parse(JSON.stringify(dropped)).toolCalls[0].link).toBeUndefined();
    const elsewhere = { ...link, sandboxId: "sb.us-9.default.abcdefghij0123456789" };
    const unsigned = (await signResponseLinks(response(elsewhere), sign)) as ChatResponse;
    expect(unsigned.toolCalls[1]?.link).toEqual(elsewhere);
  });
});

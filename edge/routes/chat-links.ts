import { type ChatPortLink, ChatPortLinkSchema } from "../../shared/api.ts";
import { encodeSse, parseSse, SseBlockSplitter } from "../../shared/sse.ts";
import type { AppContext } from "../app-env.ts";
import type { EdgeConfig } from "../config.ts";
import { signedLinkUrl } from "../links/sign.ts";
import { sandboxWhere } from "./sandboxes.ts";

/**
 * Chat's open_port_link (session mode): the agent opens the link and reports it in the turn's
 * `tool.result` event and `toolCalls[]` without a URL (it holds no link key, and the model must
 * never see the token). On the way to the client the edge signs each reported link for the
 * CALLER's tenant with the one signer (links/sign.ts) and adds `url`.
 *
 * Why signing what the event says is safe: the token's tenant is always the caller's (never taken
 * from the event), and the agent checks every request to a link again (links/proxy.ts relays it as
 * that tenant; PortLinks.check wants the link id open on that sandbox and port, the sandbox that
 * tenant's, the record unexpired and unrevoked). So a token for a made-up link id, another port,
 * another tenant's sandbox, or an expiry past the record's grants nothing: link_not_found. What the
 * agent does not re-check is `public`; it comes from the agent's own record, over the agent's
 * authenticated tunnel, never from the model or the client (their text reaches the stream only
 * JSON-encoded inside other events, so it cannot forge an event), and it could only ever concern a
 * link of the caller's own sandbox. The URL holds the token: it is never logged.
 */

export type LinkSigner = (link: ChatPortLink) => Promise<ChatPortLink>;

/** Signs links for `tenant` under the edge host of `apiUrl`; a sandbox of no region served here gets no URL. */
export function linkSigner(config: EdgeConfig, apiUrl: string, tenant: string): LinkSigner {
  return async ({ url: _fromAgent, ...link }) => {
    const where = sandboxWhere(config.regions, link.sandboxId);
    if (!where) return link;
    return { ...link, url: await signedLinkUrl(config, apiUrl, where.region, { ...link, tenant }) };
  };
}

/** The signer for this request: its caller's tenant, its host. */
export const chatLinkSigner = (c: AppContext): LinkSigner =>
  linkSigner(c.get("deps").config, c.req.url, c.get("principal").tenant);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** `record` with its `link` signed, or undefined when it reports no (well-formed) link. */
async function signRecord(record: unknown, sign: LinkSigner): Promise<Json | undefined> {
  if (!isObject(record) || record.link === undefined) return undefined;
  const link = ChatPortLinkSchema.safeParse(record.link);
  // A malformed link is dropped rather than passed on unsigned.
  if (!link.success) return { ...record, link: undefined };
  return { ...record, link: await sign(link.data) };
}

/** A chat response (JSON answer, or a `done` event's) with its tool calls' links signed; undefined if it has none. */
export async function signResponseLinks(response: unknown, sign: LinkSigner): Promise<Json | undefined> {
  if (!isObject(response) || !Array.isArray(response.toolCalls)) return undefined;
  let changed = false;
  const toolCalls = await Promise.all(
    response.toolCalls.map(async (t: unknown) => {
      const signed = await signRecord(t, sign);
      if (signed) changed = true;
      return signed ?? t;
    }),
  );
  return changed ? { ...response, toolCalls } : undefined;
}

/** One chat event's data with its links signed (`tool.result`, `done`); undefined when nothing changes. */
export async function signEventLinks(
  event: string,
  data: unknown,
  sign: LinkSigner,
): Promise<Json | undefined> {
  if (event === "tool.result") return signRecord(data, sign);
  if (event === "done" && isObject(data)) {
    const response = await signResponseLinks(data.response, sign);
    return response ? { ...data, response } : undefined;
  }
  return undefined;
}

/**
 * The agent's chat event stream with each reported link signed. Whole event blocks pass through
 * unread unless they name a link; a rewritten event is re-encoded by the one SSE codec. A pipe,
 * not a tee: the client's cancel still reaches the agent.
 */
export function signStreamLinks(
  source: ReadableStream<Uint8Array>,
  sign: LinkSigner,
): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const splitter = new SseBlockSplitter();
  const rewrite = async (block: string): Promise<string> => {
    if (!block.includes('"link"')) return block;
    const [msg] = parseSse(block);
    if (!msg) return block;
    let data: unknown;
    try {
      data = JSON.parse(msg.data);
    } catch {
      return block;
    }
    const signed = await signEventLinks(msg.event, data, sign);
    if (!signed) return block;
    return encodeSse({ event: msg.event, data: JSON.stringify(signed), ...(msg.id ? { id: msg.id } : {}) });
  };
  const transform = async (text: string, controller: TransformStreamDefaultController<Uint8Array>) => {
    for (const blocks of splitter.push(text)) {
      let out = "";
      for (const block of blocks.split(/(?<=\n\n)/)) out += await rewrite(block);
      controller.enqueue(encoder.encode(out));
    }
  };
  return source.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform: (chunk, controller) => transform(decoder.decode(chunk, { stream: true }), controller),
      // An unterminated last block is no event (the SSE spec drops it): nothing more to send.
      flush: (controller) => transform(decoder.decode(), controller),
    }),
  );
}

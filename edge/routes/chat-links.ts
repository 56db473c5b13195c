import { type ChatPortLink, ChatPortLinkSchema } from "../../shared/api.ts";
import { encodeSse, parseSse, SseBlockSplitter } from "../../shared/sse.ts";
import type { AppContext } from "../app-env.ts";
import { signedLinkUrl } from "../links/sign.ts";
import { sandboxWhere } from "./sandboxes.ts";

/**
 * Chat's open_port_link (session mode): the agent opens the link and reports it in the turn's
 * `tool.result` event and `toolCalls[]` without a URL (it holds no link key, and the model must
 * never see the token). On the way to the client the edge signs each reported link for the
 * CALLER's tenant with the one signer (links/sign.ts) and adds `url`.
 *
 * Signing what the agent's answer says grants nothing a forged or altered answer could abuse: a
 * link request is checked again by the agent every time (link/proxy.ts relays it; the agent's
 * PortLinks.check wants the link open on that sandbox, for that port, and the sandbox the token's
 * tenant's). A token for a link id, sandbox or port that does not exist, or of another tenant's
 * sandbox, is link_not_found; its expiry and `public` only ever narrow what the recorded link
 * allows, never widen it (the agent's record is the one checked). The URL holds the token: it is
 * never logged.
 */

export type LinkSigner = (link: ChatPortLink) => Promise<ChatPortLink>;

/** Signs links for this request's tenant under this edge's host; a sandbox of no region served here gets no URL. */
export function chatLinkSigner(c: AppContext): LinkSigner {
  const { config } = c.get("deps");
  const tenant = c.get("principal").tenant;
  return async ({ url: _ignored, ...link }) => {
    const where = sandboxWhere(config.regions, link.sandboxId);
    if (!where) return link;
    return { ...link, url: await signedLinkUrl(config, c.req.url, where.region, { ...link, tenant }) };
  };
}

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

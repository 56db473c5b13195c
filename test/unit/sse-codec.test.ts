import { describe, expect, it } from "vitest";
import {
  encodeSse,
  encodeSseComment,
  parseSse,
  readSse,
  SseBlockSplitter,
  SseParser,
} from "../../shared/sse.ts";

const bodyOf = (chunks: string[]) =>
  new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(new TextEncoder().encode(ch));
      c.close();
    },
  });

describe("shared SSE codec", () => {
  it("parses LF, CRLF and CR line ends the same way", () => {
    for (const eol of ["\n", "\r\n", "\r"]) {
      const text = ["event: a", "data: 1", "", "data: 2", "", ""].join(eol);
      expect(parseSse(text), JSON.stringify(eol)).toEqual([
        { event: "a", data: "1" },
        { event: "message", data: "2" },
      ]);
    }
  });

  it("joins multi-line data, keeps ids and retry, skips comments and data-less blocks", () => {
    const text = ": ping\n\nid: 7\nretry: 1500\nevent: x\ndata: one\ndata:two\ndata\n\nevent: empty\n\n";
    expect(parseSse(text)).toEqual([{ event: "x", data: "one\ntwo\n", id: "7", retry: 1500 }]);
  });

  it("parses events split anywhere, a CRLF split across chunks included", () => {
    const text = "event: a\r\ndata: hello\r\n\r\nevent: b\r\ndata: world\r\n\r\n";
    for (let i = 1; i < text.length; i++) {
      const p = new SseParser();
      const got = [...p.push(text.slice(0, i)), ...p.push(text.slice(i)), ...p.end()];
      expect(
        got.map((m) => m.data),
        `split at ${i}`,
      ).toEqual(["hello", "world"]);
    }
  });

  it("drops a block the stream ended before closing", () => {
    expect(parseSse("data: done\n\ndata: half")).toEqual([{ event: "message", data: "done" }]);
  });

  it("round-trips what it encodes, multi-line data included", () => {
    const msgs = [
      { event: "stdout", data: "a\nb\r\nc" },
      { event: "message", data: "{}", id: "3" },
    ];
    const text = msgs.map(encodeSse).join("") + encodeSseComment("keep\nalive");
    expect(parseSse(text)).toEqual([
      { event: "stdout", data: "a\nb\nc" },
      { event: "message", data: "{}", id: "3" },
    ]);
  });

  it("reads a body and cancels it when the reader stops early", async () => {
    const got: string[] = [];
    for await (const m of readSse(bodyOf(["data: 1\n", "\ndata: 2\n\n", "data: 3\n\n"]))) {
      got.push(m.data);
      if (m.data === "2") break;
    }
    expect(got).toEqual(["1", "2"]);
  });

  it("splits raw blocks whole, never mid-event", () => {
    const s = new SseBlockSplitter();
    expect(s.push("event: a\ndata: 1\n\nevent: b\nda")).toEqual(["event: a\ndata: 1\n\n"]);
    expect(s.push("ta: 2\r")).toEqual([]);
    expect(s.push("\n\r\n")).toEqual(["event: b\ndata: 2\n\n"]);
  });
});

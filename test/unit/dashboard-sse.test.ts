import { describe, expect, it } from "vitest";
import { dashboardCore } from "../../edge/dashboard/state.ts";

const { createSseParser } = dashboardCore();

describe("the dashboard's SSE parser", () => {
  it("parses named events, ignores comments, joins multi-line data", () => {
    const p = createSseParser();
    const msgs = p.push(
      ': ping\n\nevent: snapshot\ndata: {"a":1}\n\nevent: pool\ndata: line1\ndata: line2\nid: 7\n\n',
    );
    expect(msgs).toEqual([
      { event: "snapshot", data: '{"a":1}', id: null },
      { event: "pool", data: "line1\nline2", id: "7" },
    ]);
  });

  it("handles events split across chunks at any byte, and CRLF / CR line ends", () => {
    const text = 'event: pool\r\ndata: {"x":"y"}\r\n\r\nevent: pool\rdata: 2\r\rdata: 3\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const p = createSseParser();
      const msgs = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
      expect(
        msgs.map((m) => m.data),
        `cut at ${cut}`,
      ).toEqual(['{"x":"y"}', "2", "3"]);
      expect(msgs[2]!.event).toBe("message");
    }
  });

  it("drops an unterminated last event at the end of the stream", () => {
    const p = createSseParser();
    expect(p.push("event: pool\ndata: 1\n")).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it("a field without a value and data without a space are valid", () => {
    const p = createSseParser();
    expect(p.push("data\ndata:x\n\n")).toEqual([{ event: "message", data: "\nx", id: null }]);
  });
});

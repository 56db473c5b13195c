import { describe, expect, it } from "vitest";
import { formatServerTiming, parseServerTiming, Spans, spansForLog } from "../../shared/spans.ts";

function fakeClock(start = 100) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("Spans", () => {
  it("times sync and async work, also when it throws", async () => {
    const clock = fakeClock();
    const spans = new Spans(clock.now);
    const end = spans.start("auth", "JWT verify");
    clock.advance(1.5);
    expect(end()).toBe(1.5);
    clock.advance(1);
    end(); // a second end records nothing more
    await spans.time("quota", async () => {
      clock.advance(0.25);
    });
    await expect(
      spans.time("sign", () => {
        clock.advance(2);
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(spans.all).toEqual([
      { name: "auth", dur: 1.5, desc: "JWT verify" },
      { name: "quota", dur: 0.25 },
      { name: "sign", dur: 2 },
    ]);
    expect(spans.elapsed()).toBe(4.75);
  });

  it("drops names and durations that could not travel in a header", () => {
    const spans = new Spans(fakeClock().now);
    spans.add("Bad Name", 1);
    spans.add("ok", Number.NaN);
    spans.add("ok", -1);
    spans.add("quoted", 1, 'has "quotes"');
    expect(spans.all).toEqual([{ name: "quoted", dur: 1 }]);
    for (let i = 0; i < 40; i++) spans.add(`s${i}`, 1);
    expect(spans.all.length).toBe(32);
  });

  it("merges another hop's spans under a prefix", () => {
    const spans = new Spans(fakeClock().now);
    spans.add("edge-auth", 1);
    spans.merge("agent-", [{ name: "exec", dur: 3.25, desc: "run" }]);
    expect(spans.all.map((s) => s.name)).toEqual(["edge-auth", "agent-exec"]);
    expect(spansForLog(spans.all)).toEqual({ "edge.auth": 1, "agent.exec": 3.25 });
  });
});

describe("Server-Timing", () => {
  it("formats and parses back the same spans", () => {
    const spans = [
      { name: "verify", dur: 0.4123456, desc: "relay signature + replay" },
      { name: "exec", dur: 3 },
      { name: "total", dur: 5.5 },
    ];
    const header = formatServerTiming(spans);
    expect(header).toBe('verify;dur=0.412;desc="relay signature + replay", exec;dur=3, total;dur=5.5');
    expect(parseServerTiming(header)).toEqual([
      { name: "verify", dur: 0.412, desc: "relay signature + replay" },
      { name: "exec", dur: 3 },
      { name: "total", dur: 5.5 },
    ]);
  });

  it.each([
    ["empty", ""],
    ["no dur", "exec"],
    ["negative", "exec;dur=-1"],
    ["not a number", "exec;dur=abc"],
    ["exponent", "exec;dur=1e400"],
    ["upper-case name", "Exec;dur=1"],
    ["one bad entry among good ones", "exec;dur=1, total;dur=x"],
    ["unterminated desc", 'exec;dur=1;desc="abc'],
    ["too long", `exec;dur=1;desc="${"a".repeat(3000)}"`],
    ["too many", Array.from({ length: 40 }, (_, i) => `s${i};dur=1`).join(", ")],
    ["absurd duration", "exec;dur=99999999999"],
  ])("ignores a malformed header (%s) instead of failing", (_, header) => {
    expect(parseServerTiming(header)).toEqual([]);
  });

  it("treats a missing header as no spans", () => {
    expect(parseServerTiming(null)).toEqual([]);
    expect(parseServerTiming(undefined)).toEqual([]);
  });
});

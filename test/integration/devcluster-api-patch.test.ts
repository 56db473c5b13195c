import { describe, expect, it } from "vitest";
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from "../../devcluster/apiserver/patch.ts";
import { parseFieldSelector, parseLabelSelector } from "../../devcluster/apiserver/selectors.ts";
import { StatusError } from "../../devcluster/apiserver/status.ts";
import { parseMicroTime, parseTime } from "../../devcluster/apiserver/time.ts";

describe("RFC 7386 merge patch", () => {
  it("follows the RFC's examples", () => {
    expect(mergePatch({ a: "b" }, { a: "c" })).toEqual({ a: "c" });
    expect(mergePatch({ a: "b" }, { b: "c" })).toEqual({ a: "b", b: "c" });
    expect(mergePatch({ a: "b" }, { a: null })).toEqual({});
    expect(mergePatch({ a: [{ b: "c" }] }, { a: [1] })).toEqual({ a: [1] });
    expect(mergePatch({ a: { b: "c" } }, { a: { b: "d", c: null } })).toEqual({ a: { b: "d" } });
    expect(mergePatch(["a", "b"], ["c", "d"])).toEqual(["c", "d"]);
    expect(mergePatch({}, { a: { bb: { ccc: null } } })).toEqual({ a: { bb: {} } });
  });
});

describe("RFC 6902 JSON patch", () => {
  const doc = { a: { b: [1, 2, 3] }, c: "x", "d/e": 1, "f~g": 2 };
  it("add/remove/replace/move/copy/test, arrays and escaped paths", () => {
    expect(jsonPatch(doc, [{ op: "add", path: "/a/b/1", value: 9 }])).toEqual({
      ...doc,
      a: { b: [1, 9, 2, 3] },
    });
    expect(jsonPatch(doc, [{ op: "add", path: "/a/b/-", value: 4 }])).toMatchObject({
      a: { b: [1, 2, 3, 4] },
    });
    expect(jsonPatch(doc, [{ op: "remove", path: "/a/b/0" }])).toMatchObject({ a: { b: [2, 3] } });
    expect(jsonPatch(doc, [{ op: "replace", path: "/d~1e", value: 5 }])).toMatchObject({ "d/e": 5 });
    expect(jsonPatch(doc, [{ op: "replace", path: "/f~0g", value: 6 }])).toMatchObject({ "f~g": 6 });
    expect(jsonPatch(doc, [{ op: "move", from: "/c", path: "/z" }])).not.toHaveProperty("c");
    expect(jsonPatch(doc, [{ op: "copy", from: "/a/b", path: "/y" }])).toMatchObject({
      y: [1, 2, 3],
      a: { b: [1, 2, 3] },
    });
    expect(jsonPatch(doc, [{ op: "test", path: "/a", value: { b: [1, 2, 3] } }])).toEqual(doc);
    expect(doc.a.b).toEqual([1, 2, 3]);
  });
  it("failures: 422 when an op does not apply, 400 when the patch is malformed", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        if (e instanceof PatchError) return e.code;
        throw e;
      }
      return 0;
    };
    expect(code(() => jsonPatch(doc, [{ op: "test", path: "/c", value: "y" }]))).toBe(422);
    expect(code(() => jsonPatch(doc, [{ op: "remove", path: "/nope" }]))).toBe(422);
    expect(code(() => jsonPatch(doc, [{ op: "replace", path: "/a/b/7", value: 1 }]))).toBe(422);
    expect(code(() => jsonPatch(doc, [{ op: "frobnicate", path: "/a" }]))).toBe(400);
    expect(code(() => jsonPatch(doc, { op: "add" }))).toBe(400);
  });
});

describe("strategic merge patch (reduced)", () => {
  it("merges keyed lists, honours $patch: delete, replaces unkeyed lists", () => {
    const cur = {
      status: {
        conditions: [
          { type: "A", status: "False" },
          { type: "B", status: "True" },
        ],
        containerStatuses: [{ name: "c", ready: false, restartCount: 1 }],
        other: [1, 2],
      },
    };
    const out = strategicMergePatch(cur, {
      status: {
        conditions: [
          { type: "A", status: "True" },
          { type: "B", $patch: "delete" },
          { type: "C", status: "Unknown" },
        ],
        containerStatuses: [{ name: "c", ready: true }],
        other: [3],
      },
    });
    expect(out).toEqual({
      status: {
        conditions: [
          { type: "A", status: "True" },
          { type: "C", status: "Unknown" },
        ],
        containerStatuses: [{ name: "c", ready: true, restartCount: 1 }],
        other: [3],
      },
    });
  });
});

describe("selectors", () => {
  it("label selector operators", () => {
    const m = (sel: string, labels: Record<string, string>) => parseLabelSelector(sel)(labels);
    expect(m("a=b", { a: "b" })).toBe(true);
    expect(m("a==b", { a: "c" })).toBe(false);
    expect(m("a!=b", {})).toBe(true);
    expect(m("a in (x, y)", { a: "y" })).toBe(true);
    expect(m("a notin (x,y)", {})).toBe(true);
    expect(m("a notin (x,y)", { a: "x" })).toBe(false);
    expect(m("a", { a: "" })).toBe(true);
    expect(m("!a", { a: "" })).toBe(false);
    expect(m("n>3", { n: "4" })).toBe(true);
    expect(m("", { a: "1" })).toBe(true);
    for (const bad of ["a in x", "a=b,", "(a)", "a in (x", "a=b c"]) {
      expect(() => parseLabelSelector(bad), bad).toThrow(StatusError);
    }
  });
  it("field selector with escapes and unsupported labels", () => {
    const sel = parseFieldSelector("metadata.name=a\\,b,spec.nodeName!=n", [
      "metadata.name",
      "spec.nodeName",
    ]);
    expect(sel({ "metadata.name": "a,b", "spec.nodeName": "m" })).toBe(true);
    expect(sel({ "metadata.name": "a,b", "spec.nodeName": "n" })).toBe(false);
    expect(() => parseFieldSelector("status.foo=1", ["metadata.name"])).toThrow(
      "field label not supported: status.foo",
    );
  });
});

describe("MicroTime and Time parsing", () => {
  it("MicroTime needs exactly six fractional digits", () => {
    expect(parseMicroTime("2026-01-02T03:04:05.123456Z")).toBe("2026-01-02T03:04:05.123456Z");
    expect(() => parseMicroTime("2026-01-02T03:04:05.123Z")).toThrow('cannot parse ".123Z" as ".000000"');
    expect(() => parseMicroTime("2026-01-02T03:04:05Z")).toThrow('cannot parse "Z" as ".000000"');
    expect(() => parseMicroTime("2026-01-02T03:04:05.1234567Z")).toThrow('cannot parse "7Z" as "Z07:00"');
  });
  it("Time accepts any fraction and keeps whole seconds", () => {
    expect(parseTime("2026-01-02T03:04:05.987654Z")).toBe("2026-01-02T03:04:05Z");
    expect(parseTime("2026-01-02T05:04:05+02:00")).toBe("2026-01-02T03:04:05Z");
    expect(() => parseTime("yesterday")).toThrow("parsing time");
  });
});

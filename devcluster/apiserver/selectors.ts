import { badRequest } from "./status.ts";

type Op = "=" | "!=" | "in" | "notin" | "exists" | "!exists" | "gt" | "lt";
interface Requirement {
  key: string;
  op: Op;
  values: string[];
}

export type Selector = (fields: Record<string, string | undefined>) => boolean;

const KEY = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$/;

/** Parses a label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`); throws a 400 StatusError. */
export function parseLabelSelector(raw: string): Selector {
  const reqs: Requirement[] = [];
  let i = 0;
  const s = raw;
  const fail = (msg: string): never => {
    throw badRequest(`unable to parse requirement: ${msg}`);
  };
  const skipWs = () => {
    while (i < s.length && /\s/.test(s[i] ?? "")) i++;
  };
  const readIdent = (): string => {
    skipWs();
    const start = i;
    while (i < s.length && /[A-Za-z0-9_./-]/.test(s[i] ?? "")) i++;
    return s.slice(start, i);
  };
  while (true) {
    skipWs();
    if (i >= s.length) break;
    let negate = false;
    if (s[i] === "!") {
      negate = true;
      i++;
    }
    const key = readIdent();
    if (key === "") fail(`found '${s[i] ?? ""}', expected: identifier`);
    if (!KEY.test(key)) fail(`key: Invalid value: ${JSON.stringify(key)}: invalid label key`);
    skipWs();
    if (negate) {
      reqs.push({ key, op: "!exists", values: [] });
    } else if (i >= s.length || s[i] === ",") {
      reqs.push({ key, op: "exists", values: [] });
    } else if (s.startsWith("==", i) || s.startsWith("!=", i) || s[i] === "=") {
      const op: Op = s.startsWith("!=", i) ? "!=" : "=";
      i += s.startsWith("==", i) || s.startsWith("!=", i) ? 2 : 1;
      reqs.push({ key, op, values: [readIdent()] });
    } else if (s[i] === ">" || s[i] === "<") {
      const op: Op = s[i] === ">" ? "gt" : "lt";
      i++;
      const v = readIdent();
      if (!/^-?\d+$/.test(v)) fail(`for 'Gt', 'Lt' operators, the value must be an integer`);
      reqs.push({ key, op, values: [v] });
    } else {
      const word = readIdent();
      if (word !== "in" && word !== "notin") fail(`found '${word}', expected: in, notin, =, ==, !=, gt, lt`);
      skipWs();
      if (s[i] !== "(") fail(`found '${s[i] ?? ""}', expected: '('`);
      i++;
      const values: string[] = [];
      while (true) {
        values.push(readIdent());
        skipWs();
        if (s[i] === ",") {
          i++;
          continue;
        }
        if (s[i] === ")") {
          i++;
          break;
        }
        fail(`found '${s[i] ?? ""}', expected: ',', ')' or identifier`);
      }
      reqs.push({ key, op: word === "in" ? "in" : "notin", values });
    }
    skipWs();
    if (i < s.length) {
      if (s[i] !== ",") fail(`found '${s[i]}', expected: ',' or 'end of string'`);
      i++;
      skipWs();
      if (i >= s.length) fail("found '', expected: identifier");
    }
  }
  return (labels) => reqs.every((r) => matches(r, labels[r.key]));
}

function matches(r: Requirement, v: string | undefined): boolean {
  switch (r.op) {
    case "=":
      return v === r.values[0];
    case "!=":
      return v !== r.values[0];
    case "in":
      return v !== undefined && r.values.includes(v);
    case "notin":
      return v === undefined || !r.values.includes(v);
    case "exists":
      return v !== undefined;
    case "!exists":
      return v === undefined;
    case "gt":
    case "lt": {
      if (v === undefined || !/^-?\d+$/.test(v)) return false;
      const a = Number(v);
      const b = Number(r.values[0]);
      return r.op === "gt" ? a > b : a < b;
    }
  }
}

/** Parses a field selector (`a=b,c!=d`, with `\,` `\=` `\\` escapes) limited to `supported` fields. */
export function parseFieldSelector(raw: string, supported: readonly string[]): Selector {
  const terms: string[] = [];
  let cur = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] ?? "";
    if (c === "\\" && i + 1 < raw.length) {
      cur += c + (raw[i + 1] ?? "");
      i++;
    } else if (c === ",") {
      terms.push(cur);
      cur = "";
    } else cur += c;
  }
  terms.push(cur);
  const reqs: Array<{ key: string; neg: boolean; value: string }> = [];
  for (const term of terms) {
    if (term === "") continue;
    const m = term.match(/^(.*?)(!=|==|=)(.*)$/s);
    if (!m) throw badRequest(`invalid selector: '${raw}'; can't understand '${term}'`);
    const key = (m[1] ?? "").trim();
    const value = (m[3] ?? "").replace(/\\(.)/g, "$1");
    if (!supported.includes(key)) throw badRequest(`field label not supported: ${key}`);
    reqs.push({ key, neg: m[2] === "!=", value });
  }
  return (fields) => reqs.every((r) => ((fields[r.key] ?? "") === r.value) !== r.neg);
}

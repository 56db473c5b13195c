/**
 * Go's encoding/json syntax error for `text` (the first one, as Go's scanner reports it), so that
 * malformed bodies get the real server's messages. Only called once JSON.parse has failed.
 */
export function goJsonSyntaxError(text: string): string {
  let i = 0;
  const n = text.length;
  const quote = (c: string): string => {
    if (c === "'") return "'\\''";
    if (c === '"') return "'\"'";
    const q = JSON.stringify(c);
    return `'${q.slice(1, -1)}'`;
  };
  class Fail extends Error {}
  const fail = (msg: string): never => {
    throw new Fail(msg);
  };
  const eof = () => fail("unexpected end of JSON input");
  const isWs = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";
  const skip = () => {
    while (i < n && isWs(text[i])) i++;
  };
  const at = (): string => text[i] ?? "";

  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++) {
      if (i >= n) eof();
      if (text[i] !== word[k])
        fail(`invalid character ${quote(at())} in literal ${word} (expecting ${quote(word[k] ?? "")})`);
      i++;
    }
  };
  const digits = (ctx: string) => {
    if (i >= n) eof();
    if (!/[0-9]/.test(at())) fail(`invalid character ${quote(at())} ${ctx}`);
    while (i < n && /[0-9]/.test(at())) i++;
  };
  const number = () => {
    if (at() === "-") {
      i++;
      if (i >= n) eof();
      if (!/[0-9]/.test(at())) fail(`invalid character ${quote(at())} in numeric literal`);
    }
    if (at() === "0") i++;
    else while (i < n && /[0-9]/.test(at())) i++;
    if (at() === ".") {
      i++;
      digits("after decimal point in numeric literal");
    }
    if (at() === "e" || at() === "E") {
      i++;
      if (at() === "+" || at() === "-") i++;
      digits("in exponent of numeric literal");
    }
  };
  const string = () => {
    i++;
    while (true) {
      if (i >= n) eof();
      const c = at();
      if (c === '"') {
        i++;
        return;
      }
      if (c === "\\") {
        i++;
        if (i >= n) eof();
        const e = at();
        if (e === "u") {
          i++;
          for (let k = 0; k < 4; k++) {
            if (i >= n) eof();
            if (!/[0-9a-fA-F]/.test(at()))
              fail(`invalid character ${quote(at())} in \\u hexadecimal character escape`);
            i++;
          }
          continue;
        }
        if (!'"\\/bfnrt'.includes(e)) fail(`invalid character ${quote(e)} in string escape code`);
        i++;
        continue;
      }
      if (c < " ") fail(`invalid character ${quote(c)} in string literal`);
      i++;
    }
  };
  const value = (ctx: string): void => {
    skip();
    if (i >= n) eof();
    const c = at();
    if (c === "{") {
      i++;
      skip();
      if (at() === "}") {
        i++;
        return;
      }
      while (true) {
        skip();
        if (i >= n) eof();
        if (at() !== '"') fail(`invalid character ${quote(at())} looking for beginning of object key string`);
        string();
        skip();
        if (i >= n) eof();
        if (at() !== ":") fail(`invalid character ${quote(at())} after object key`);
        i++;
        value("looking for beginning of value");
        skip();
        if (i >= n) eof();
        if (at() === ",") {
          i++;
          continue;
        }
        if (at() === "}") {
          i++;
          return;
        }
        fail(`invalid character ${quote(at())} after object key:value pair`);
      }
    }
    if (c === "[") {
      i++;
      skip();
      if (at() === "]") {
        i++;
        return;
      }
      while (true) {
        value("looking for beginning of value");
        skip();
        if (i >= n) eof();
        if (at() === ",") {
          i++;
          continue;
        }
        if (at() === "]") {
          i++;
          return;
        }
        fail(`invalid character ${quote(at())} after array element`);
      }
    }
    if (c === '"') string();
    else if (c === "t") literal("true");
    else if (c === "f") literal("false");
    else if (c === "n") literal("null");
    else if (c === "-" || /[0-9]/.test(c)) number();
    else fail(`invalid character ${quote(c)} ${ctx}`);
  };
  try {
    value("looking for beginning of value");
    skip();
    if (i < n) fail(`invalid character ${quote(at())} after top-level value`);
    return "invalid JSON";
  } catch (e) {
    if (e instanceof Fail) return e.message;
    throw e;
  }
}

/** apimachinery's summarizeData: the body's first 30 bytes (hex unless it starts with `{`). */
export function summarizeData(data: Buffer, maxLength = 30): string {
  if (data.length === 0) return "<empty>";
  if (data[0] === 0x7b) {
    return data.length > maxLength
      ? `${data.subarray(0, maxLength).toString("utf8")} ...`
      : data.toString("utf8");
  }
  return data.length > maxLength
    ? `${data.subarray(0, maxLength).toString("hex")} ...`
    : data.toString("hex");
}

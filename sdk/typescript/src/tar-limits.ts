// The size of a tar archive, read from its headers without extracting it: the Agents SDK's archive
// limits (members, extracted bytes) are checked before a workspace archive is sent to a sandbox.

export interface TarCensus {
  /** Entries that land on disk (files, directories, links); pax and GNU long-name headers excluded. */
  members: number;
  /** Bytes of file contents. */
  bytes: number;
}

const BLOCK = 512;

/** Octal (NUL/space terminated) or GNU base-256 (high bit set) numeric field. */
function numberField(h: Uint8Array, at: number, len: number): number {
  if ((h[at]! & 0x80) !== 0) {
    let n = h[at]! & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + h[at + i]!;
    return n;
  }
  const text = new TextDecoder()
    .decode(h.subarray(at, at + len))
    .replace(/[\0 ]+$/, "")
    .trim();
  if (!/^[0-7]*$/.test(text)) throw new Error(`not a tar archive (size field "${text}")`);
  return text === "" ? 0 : Number.parseInt(text, 8);
}

/** Counts an archive's members and content bytes; throws on anything that is not a tar archive. */
export function tarCensus(data: Uint8Array): TarCensus {
  let members = 0;
  let bytes = 0;
  let at = 0;
  while (at + BLOCK <= data.length) {
    const h = data.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) return { members, bytes };
    const size = numberField(h, 124, 12);
    const type = String.fromCharCode(h[156]!);
    // x/g: pax headers, L/K: GNU long name/link: metadata of the next member, not members.
    if (!"xgLK".includes(type)) {
      members++;
      if (type === "0" || type === "\0" || type === "7") bytes += size;
    }
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  if (at === data.length && data.length > 0) return { members, bytes };
  throw new Error("not a tar archive (truncated)");
}

/**
 * The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3), read from the first record
 * without decrypting anything. The proxy compares it with the CONNECT target, so a sandbox allowed
 * to reach one name cannot ride that tunnel to another name on the same address (domain fronting).
 */
export type Hello =
  | { kind: "incomplete" }
  | { kind: "not_tls" }
  | { kind: "tls"; serverName: string | undefined };

/** Largest first record worth waiting for: a TLS record is at most 2^14 bytes plus its header. */
export const MAX_HELLO_BYTES = 16384 + 5;

export function readClientHello(buf: Buffer): Hello {
  if (buf.length < 1) return { kind: "incomplete" };
  if (buf[0] !== 0x16) return { kind: "not_tls" };
  if (buf.length < 5) return { kind: "incomplete" };
  const recordLen = buf.readUInt16BE(3);
  if (buf[1] !== 3 || recordLen > 16384) return { kind: "not_tls" };
  if (buf.length < 5 + recordLen) return { kind: "incomplete" };
  const rec = buf.subarray(5, 5 + recordLen);
  if (rec[0] !== 0x01 || rec.length < 4) return { kind: "not_tls" };
  // The handshake may continue in a later record; whatever this record holds is parsed.
  const end = Math.min(rec.length, 4 + rec.readUIntBE(1, 3));
  let at = 4 + 2 + 32; // type+length, legacy_version, random
  const need = (n: number) => at + n <= end;
  if (!need(1)) return { kind: "tls", serverName: undefined };
  at += 1 + (rec[at] as number); // session id
  if (!need(2)) return { kind: "tls", serverName: undefined };
  at += 2 + rec.readUInt16BE(at); // cipher suites
  if (!need(1)) return { kind: "tls", serverName: undefined };
  at += 1 + (rec[at] as number); // compression methods
  if (!need(2)) return { kind: "tls", serverName: undefined };
  const extEnd = Math.min(end, at + 2 + rec.readUInt16BE(at));
  at += 2;
  while (at + 4 <= extEnd) {
    const type = rec.readUInt16BE(at);
    const extLen = rec.readUInt16BE(at + 2);
    const body = at + 4;
    if (type === 0 && body + 5 <= extEnd) {
      // server_name_list: u16 length, then entries of (u8 type, u16 length, name); host_name is type 0.
      let p = body + 2;
      const listEnd = Math.min(extEnd, body + 2 + rec.readUInt16BE(body));
      while (p + 3 <= listEnd) {
        const nameType = rec[p] as number;
        const nameLen = rec.readUInt16BE(p + 1);
        if (nameType === 0 && p + 3 + nameLen <= listEnd)
          return { kind: "tls", serverName: rec.subarray(p + 3, p + 3 + nameLen).toString("ascii") };
        p += 3 + nameLen;
      }
    }
    at = body + extLen;
  }
  return { kind: "tls", serverName: undefined };
}

import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from "node:crypto";
import { isIP } from "node:net";

/**
 * Just enough X.509 to issue certificates with node:crypto alone: the agent image has no openssl
 * CLI, and no dependency of the project writes certificates. ECDSA P-256 keys, SHA-256 signatures,
 * DER written by hand (RFC 5280). Used for the per-cluster interception CA and its leaf
 * certificates, and by tests for their fake internet's own CA.
 */

// ---------- DER ----------

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, ...content: Buffer[]) => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
};
const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);
const ctx = (n: number, ...c: Buffer[]) => tlv(0xa0 | n, ...c);
const octets = (b: Buffer) => tlv(0x04, b);
const bits = (b: Buffer) => tlv(0x03, Buffer.from([0]), b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));

function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1] as number) < 0x80) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] as number) >= 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split(".").map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = n >>> 7; v > 0; v >>>= 7) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`))
    : tlv(0x18, Buffer.from(`${iso}Z`));
}

const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));
const name = (cn: string) =>
  seq(set(seq(oid("2.5.4.10"), utf8("pi-sandbox-runtime"))), set(seq(oid("2.5.4.3"), utf8(cn))));
const ext = (id: string, critical: boolean, value: Buffer) =>
  seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

function keyId(publicKey: KeyObject): Buffer {
  // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (the SPKI's last 65 bytes for P-256).
  const spki = publicKey.export({ type: "spki", format: "der" });
  return createHash("sha1")
    .update(spki.subarray(spki.length - 65))
    .digest();
}

function san(host: string): Buffer {
  if (isIP(host) === 4) return tlv(0x87, Buffer.from(host.split(".").map(Number)));
  return tlv(0x82, Buffer.from(host, "ascii"));
}

// ---------- certificates ----------

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

interface Signer {
  key: KeyObject;
  subject: Buffer;
  keyId: Buffer;
}

function build(opts: {
  subject: Buffer;
  publicKey: KeyObject;
  issuer: Signer | "self";
  selfKey: KeyObject;
  notAfter: Date;
  extensions: Buffer[];
}): string {
  const signer: Signer =
    opts.issuer === "self"
      ? { key: opts.selfKey, subject: opts.subject, keyId: keyId(opts.publicKey) }
      : opts.issuer;
  const tbs = seq(
    ctx(0, integer(Buffer.from([2]))),
    integer(Buffer.concat([Buffer.from([0x01]), randomBytes(15)])),
    ECDSA_SHA256,
    signer.subject,
    seq(time(new Date(Date.now() - 3600_000)), time(opts.notAfter)),
    opts.subject,
    opts.publicKey.export({ type: "spki", format: "der" }),
    ctx(
      3,
      seq(
        ...opts.extensions,
        ext("2.5.29.14", false, octets(keyId(opts.publicKey))),
        ext("2.5.29.35", false, seq(tlv(0x80, signer.keyId))),
      ),
    ),
  );
  const der = seq(tbs, ECDSA_SHA256, bits(sign("sha256", tbs, signer.key)));
  return `-----BEGIN CERTIFICATE-----\n${der.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END CERTIFICATE-----\n`;
}

/** A new CA (10 years): what a cluster generates once and keeps in a Secret. */
export function generateCa(commonName: string, years = 10): CertificateAuthority {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const notAfter = new Date(Date.now() + years * 365 * 86400_000);
  const certPem = build({
    subject: name(commonName),
    publicKey,
    issuer: "self",
    selfKey: privateKey,
    notAfter,
    extensions: [
      ext("2.5.29.19", true, seq(bool(true), integer(Buffer.from([0])))),
      // keyCertSign | cRLSign
      ext("2.5.29.15", true, tlv(0x03, Buffer.from([1, 0x06]))),
    ],
  });
  return { certPem, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** Issues server certificates for host names (or IPv4 literals) under `ca`. */
export function certIssuer(ca: CertificateAuthority) {
  const caCert = new X509Certificate(ca.certPem);
  const caKey = createPrivateKey(ca.keyPem);
  if (!caCert.checkPrivateKey(caKey)) throw new Error("the CA key does not match the CA certificate");
  const issuer: Signer = { key: caKey, subject: subjectDer(caCert), keyId: keyId(caCert.publicKey) };
  return (hosts: readonly string[], days = 7): IssuedCert => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const notAfter = new Date(Date.now() + days * 86400_000);
    const certPem = build({
      subject: name(hosts[0] ?? "localhost"),
      publicKey,
      issuer,
      selfKey: privateKey,
      notAfter,
      extensions: [
        ext("2.5.29.19", true, seq()),
        // digitalSignature
        ext("2.5.29.15", true, tlv(0x03, Buffer.from([7, 0x80]))),
        ext("2.5.29.37", false, seq(oid("1.3.6.1.5.5.7.3.1"))),
        ext("2.5.29.17", false, seq(...hosts.map(san))),
      ],
    });
    return { certPem, keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), notAfter };
  };
}

// ---------- reading back the issuer name ----------

/** The DER of a certificate's subject Name, copied from its TBSCertificate (never re-encoded). */
function subjectDer(cert: X509Certificate): Buffer {
  const der = cert.raw;
  const read = (at: number) => {
    let l = der[at + 1] as number;
    let head = 2;
    if (l & 0x80) {
      const n = l & 0x7f;
      l = 0;
      for (let i = 0; i < n; i++) l = (l << 8) | (der[at + 2 + i] as number);
      head += n;
    }
    return { tag: der[at] as number, start: at + head, end: at + head + l };
  };
  const tbs = read(read(0).start);
  let at = tbs.start;
  const fields: Array<{ tag: number; start: number; end: number; at: number }> = [];
  while (at < tbs.end && fields.length < 7) {
    const f = read(at);
    fields.push({ ...f, at });
    at = f.end;
  }
  // version [0], serial, signature, issuer, validity, subject
  const subject = fields[0]?.tag === 0xa0 ? fields[5] : fields[4];
  if (!subject) throw new Error("cannot read the CA certificate's subject");
  return der.subarray(subject.at, subject.end);
}

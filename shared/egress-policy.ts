import { z } from "zod";

/**
 * A sandbox's network policy (issue 26): which destinations its egress proxy may open, and which
 * secrets the proxy adds to requests for which hosts. Pure: it runs in workerd (the edge validates
 * the same body) and in Node (the proxy decides with it). Default is deny everything.
 *
 * Entry grammar (allow/deny): `name`, `*.name` (subdomains only, not `name` itself), an IPv4 or
 * IPv6 address, or a CIDR; each optionally followed by `:port` (IPv6 in brackets then: `[::1]:443`,
 * `[2001:db8::/32]:443`). Without a port an allow entry covers 80 and 443 only, and a deny entry
 * every port (so a narrow allow never outlives a broad deny).
 */

export const DEFAULT_PORTS: readonly number[] = [80, 443];
export const POLICY_LIMITS = { entries: 256, secrets: 32, hostsPerSecret: 32 } as const;

export type HostMatcher =
  | { kind: "name"; name: string }
  | { kind: "suffix"; suffix: string }
  | { kind: "any" }
  | { kind: "cidr"; family: 4 | 6; base: bigint; bits: number };

export interface PolicyEntry {
  /** The entry as written, for messages and logs. */
  source: string;
  host: HostMatcher;
  /** undefined = DEFAULT_PORTS. */
  port?: number;
}

export interface ParseOptions {
  /** Deployment flag: may `*` (or 0.0.0.0/0, ::/0) allow every destination? Never a default. */
  allowAnyHost?: boolean;
}

// ---------- addresses (no node:net here: shared/ runs in workerd) ----------

/** An IPv4 address as a number, or undefined. Only dotted quads: `1`, `0x7f.1` are not addresses here. */
export function parseIpv4(s: string): bigint | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    n = (n << 8n) | BigInt(p);
  }
  return n;
}

/** An IPv6 address (with `::` and an optional dotted-quad tail) as a 128-bit number, or undefined. */
export function parseIpv6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.split("::").length > 2) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const p = pieces[i] as string;
      if (i === pieces.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (v4 === undefined) return undefined;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) out.push(Number.parseInt(p, 16));
      else return undefined;
    }
    return out;
  };
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = groupsOf(head);
  const t = tail === undefined ? [] : groupsOf(tail);
  if (!h || !t) return undefined;
  const missing = 8 - h.length - t.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return undefined;
  const groups = [...h, ...Array<number>(tail === undefined ? 0 : missing).fill(0), ...t];
  return groups.reduce((n, g) => (n << 16n) | BigInt(g), 0n);
}

/** `{family, value}` of an IP literal; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) counts as the IPv4 address. */
export function parseIp(s: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = parseIpv4(s);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(s);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Lower-cased, trailing dot removed; undefined if not a DNS name (IDNs must arrive as punycode). */
export function normalizeHostName(s: string): string | undefined {
  const name = s.toLowerCase().replace(/\.$/, "");
  if (name.length === 0 || name.length > 253) return undefined;
  if (!name.split(".").every((l) => HOST_LABEL.test(l))) return undefined;
  // An all-numeric dotted name is a malformed address, not a host name.
  if (/^[0-9.]+$/.test(name)) return undefined;
  return name;
}

// ---------- entries ----------

function parsePort(s: string): number | string {
  if (!/^[0-9]{1,5}$/.test(s) || Number(s) < 1 || Number(s) > 65535) return `port "${s}" is not 1-65535`;
  return Number(s);
}

function parseCidrOrIp(s: string): HostMatcher | string {
  const [addr, bitsText, extra] = s.split("/");
  if (extra !== undefined || addr === undefined) return "is not an address or CIDR";
  const v4 = parseIpv4(addr);
  const family: 4 | 6 = v4 !== undefined ? 4 : 6;
  const value = v4 ?? parseIpv6(addr);
  if (value === undefined) return "is not an address or CIDR";
  const width = family === 4 ? 32 : 128;
  let bits = width;
  if (bitsText !== undefined) {
    if (!/^[0-9]{1,3}$/.test(bitsText) || Number(bitsText) > width)
      return `prefix "/${bitsText}" is not 0-${width}`;
    bits = Number(bitsText);
  }
  const hostBits = BigInt(width - bits);
  if ((value & ((1n << hostBits) - 1n)) !== 0n) return `has bits set beyond the /${bits} prefix`;
  // IPv4-mapped IPv6 (::ffff:a.b.c.d) is matched as IPv4, as parseIp reads destinations.
  if (family === 6 && bits >= 96 && value >> 32n === 0xffffn)
    return { kind: "cidr", family: 4, base: value & 0xffffffffn, bits: bits - 96 };
  return { kind: "cidr", family, base: value, bits };
}

/** One allow/deny/secret-host entry, or a message saying what is wrong with it. */
export function parseEntry(raw: string, opts: ParseOptions = {}): PolicyEntry | string {
  const source = raw.trim();
  if (source.length === 0 || source.length > 300) return "must be 1-300 characters";
  let hostPart = source;
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::([^:]*))?$/.exec(source);
  if (bracket) {
    hostPart = bracket[1] as string;
    if (bracket[2] !== undefined) {
      const p = parsePort(bracket[2]);
      if (typeof p === "string") return p;
      port = p;
    }
    if (!hostPart.includes(":")) return "brackets are for IPv6 addresses only";
  } else if ((source.match(/:/g) ?? []).length === 1) {
    const at = source.lastIndexOf(":");
    const p = parsePort(source.slice(at + 1));
    if (typeof p === "string") return p;
    port = p;
    hostPart = source.slice(0, at);
  }
  let host: HostMatcher;
  if (hostPart === "*") host = { kind: "any" };
  else if (hostPart.includes(":") || /^[0-9./]+$/.test(hostPart)) {
    const m = parseCidrOrIp(hostPart);
    if (typeof m === "string") return m;
    host = m;
  } else if (hostPart.startsWith("*.")) {
    const suffix = normalizeHostName(hostPart.slice(2));
    if (!suffix) return "is not a valid host pattern (`*.` then a DNS name)";
    // `*.com` would open a whole top-level domain: almost certainly a mistake, and never a safe one.
    if (!suffix.includes(".")) return "a wildcard needs at least two labels after `*.` (e.g. *.example.com)";
    host = { kind: "suffix", suffix };
  } else if (hostPart.includes("*")) {
    return "`*` is allowed only as the whole leftmost label (`*.example.com`) or alone";
  } else {
    const name = normalizeHostName(hostPart);
    if (!name) return "is not a valid host name";
    host = { kind: "name", name };
  }
  const everything = host.kind === "any" || (host.kind === "cidr" && host.bits === 0);
  if (everything && !opts.allowAnyHost)
    return "allows every destination, which this deployment does not permit";
  return port === undefined ? { source, host } : { source, host, port };
}

// ---------- schema ----------

export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/**
 * Variables the sandbox's network depends on (proxy, CA bundle): a secret's placeholder is put in
 * the sandbox's environment under the secret's name, so a secret may not be named like these.
 */
export const RESERVED_ENV_NAMES: readonly string[] = [
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "NODE_USE_ENV_PROXY",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "NODE_EXTRA_CA_CERTS",
  "REQUESTS_CA_BUNDLE",
  "PIP_CERT",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
  "NODE_OPTIONS",
  "LD_PRELOAD",
  "PATH",
];
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;

function entryList(opts: ParseOptions, namesOnly: boolean, min = 0, max: number = POLICY_LIMITS.entries) {
  return z
    .array(z.string().max(300))
    .min(min)
    .max(max)
    .superRefine((entries, ctx) => {
      entries.forEach((raw, i) => {
        const e = parseEntry(raw, opts);
        let why = typeof e === "string" ? e : undefined;
        if (!why && namesOnly && typeof e !== "string" && (e.host.kind === "cidr" || e.host.kind === "any"))
          why = "a secret is bound to host names only (its TLS is terminated for those names)";
        if (why) ctx.addIssue({ code: "custom", path: [i], message: `"${raw}": ${why}` });
      });
    });
}

/** `{allow?, deny?}`: where a sandbox may connect (the `network` of a sandbox, `PUT .../network`). */
export function networkPolicySchema(opts: ParseOptions = {}) {
  return z.strictObject({
    allow: entryList(opts, false).optional(),
    deny: entryList({ allowAnyHost: true }, false).optional(),
  });
}

/**
 * The network part on the wire: its grammar. Whether an entry that opens every destination (`*`,
 * `0.0.0.0/0`, `::/0`) is permitted is the deployment's to say (EGRESS_ALLOW_ANY_HOST, off by
 * default), checked by the agent that enforces it: `networkRefusal`.
 */
export const NetworkPolicySchema = networkPolicySchema({ allowAnyHost: true });

/**
 * Why this deployment cannot take `network` (a message naming the entry, for 400
 * invalid_request), or undefined. `proxy`: an egress proxy runs (without one, a policy that
 * opens anything would be silently ignored); `allowAnyHost`: EGRESS_ALLOW_ANY_HOST.
 */
export function networkRefusal(
  network: { allow?: string[] | undefined } | undefined,
  deployment: { proxy: boolean; allowAnyHost: boolean },
  path = "network.",
): string | undefined {
  const allow = network?.allow ?? [];
  if (allow.length > 0 && !deployment.proxy)
    return `${path}allow: this deployment runs no egress proxy (EGRESS=off), so there is no network to allow`;
  if (deployment.allowAnyHost) return undefined;
  for (const [i, raw] of allow.entries()) {
    const e = parseEntry(raw, { allowAnyHost: true });
    if (typeof e !== "string" && (e.host.kind === "any" || (e.host.kind === "cidr" && e.host.bits === 0)))
      return `${path}allow.${i}: "${raw}": allows every destination, which this deployment does not permit (EGRESS_ALLOW_ANY_HOST)`;
  }
  return undefined;
}
export type NetworkPolicyInput = z.infer<typeof NetworkPolicySchema>;

/** A secret's name: also the variable its placeholder is under in the sandbox. */
export const SecretNameSchema = z
  .string()
  .regex(SECRET_NAME, "secret names are [A-Za-z_][A-Za-z0-9_]{0,63}")
  .refine(
    (n) => !RESERVED_ENV_NAMES.includes(n.toUpperCase()),
    "this name is a variable the sandbox's network needs (proxy, CA bundle)",
  );

/** Where a secret may be sent and how: the hosts, the header, the header's format. */
export function secretBindingFields(opts: ParseOptions = {}) {
  return {
    hosts: entryList(opts, true, 1, POLICY_LIMITS.hostsPerSecret),
    /** The request header the value goes into; default Authorization. */
    header: z.string().regex(HEADER_NAME, "not an HTTP header name").optional(),
    /** What that header becomes when it carries the placeholder; `{value}` is the secret. */
    format: z
      .string()
      .max(256)
      .refine((f) => f.includes("{value}"), "format must contain {value}")
      .refine((f) => !/[\r\n]/.test(f), "format must not contain line breaks")
      .optional(),
  };
}

export function egressPolicySchema(opts: ParseOptions = {}) {
  return z.strictObject({
    network: networkPolicySchema(opts).optional(),
    secrets: z
      .array(z.strictObject({ name: SecretNameSchema, ...secretBindingFields(opts) }))
      .max(POLICY_LIMITS.secrets)
      .refine((s) => new Set(s.map((x) => x.name)).size === s.length, "each secret may be bound once")
      .optional(),
  });
}

/** The policy as sent on the wire (validated without the `*` permission). */
export const EgressPolicySchema = egressPolicySchema();
export type EgressPolicyInput = z.infer<typeof EgressPolicySchema>;

export interface SecretBinding {
  name: string;
  hosts: PolicyEntry[];
  /** Lower-cased. */
  header: string;
  format: string;
}

/** A validated policy, entries parsed once; what `decide` reads. */
export interface EgressPolicy {
  allow: PolicyEntry[];
  deny: PolicyEntry[];
  secrets: SecretBinding[];
}

export const DENY_ALL: EgressPolicy = { allow: [], deny: [], secrets: [] };

export type PolicyParse = { ok: true; policy: EgressPolicy } | { ok: false; issues: string[] };

/** `network.allow[2]`: where an issue is, as a user would write it. */
export function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (out, p) => (typeof p === "number" ? `${out}[${p}]` : out ? `${out}.${String(p)}` : String(p)),
    "",
  );
}

/** Validates and compiles a policy; errors name the entry (`network.allow[2] "x..y": is not ...`). */
export function parseEgressPolicy(input: unknown, opts: ParseOptions = {}): PolicyParse {
  const r = egressPolicySchema(opts).safeParse(input);
  if (!r.success)
    return { ok: false, issues: r.error.issues.map((i) => `${issuePath(i.path)} ${i.message}`) };
  return { ok: true, policy: compileEgressPolicy(r.data, opts) };
}

/** Compile an input that already passed `egressPolicySchema(opts)`. */
export function compileEgressPolicy(input: EgressPolicyInput, opts: ParseOptions = {}): EgressPolicy {
  const entries = (list: string[] | undefined, o: ParseOptions) =>
    (list ?? []).map((raw) => {
      const e = parseEntry(raw, o);
      if (typeof e === "string") throw new Error(`unvalidated policy entry "${raw}": ${e}`);
      return e;
    });
  return {
    allow: entries(input.network?.allow, opts),
    deny: entries(input.network?.deny, { allowAnyHost: true }),
    secrets: (input.secrets ?? []).map((s) => {
      const header = (s.header ?? "authorization").toLowerCase();
      return {
        name: s.name,
        hosts: entries(s.hosts, opts),
        header,
        format: s.format ?? (header === "authorization" ? "Bearer {value}" : "{value}"),
      };
    }),
  };
}

// ---------- deciding ----------

export type Decision =
  | { allowed: true; rule: string }
  | { allowed: false; reason: "denied_by_rule" | "not_allowed" | "invalid_host"; message: string };

function hostMatches(m: HostMatcher, host: string, ip: ReturnType<typeof parseIp>): boolean {
  switch (m.kind) {
    case "any":
      return true;
    case "name":
      return ip === undefined && host === m.name;
    case "suffix":
      return ip === undefined && host.endsWith(`.${m.suffix}`);
    case "cidr": {
      if (!ip || ip.family !== m.family) return false;
      const shift = BigInt((m.family === 4 ? 32 : 128) - m.bits);
      return ip.value >> shift === m.base >> shift;
    }
  }
}

/** Does `entry` cover host:port? `host` is a normalized name or an IP literal. */
export function entryMatches(entry: PolicyEntry, host: string, port: number, anyPort = false): boolean {
  const portOk = entry.port === undefined ? anyPort || DEFAULT_PORTS.includes(port) : entry.port === port;
  return portOk && hostMatches(entry.host, host, parseIp(host));
}

/** Normalizes a destination host: a DNS name lower-cased, or an IP literal (brackets removed). */
export function normalizeDestination(host: string): string | undefined {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (parseIp(bare)) return bare.toLowerCase();
  return normalizeHostName(bare);
}

/**
 * May a sandbox with `policy` open host:port? Deny rules win over allow rules; nothing allowed
 * means denied. CIDR rules match IP literals here; for a name, the proxy checks the address it
 * resolved with `decideAddress` (deny CIDRs then apply to what it would really connect to).
 */
export function decide(policy: EgressPolicy, host: string, port: number): Decision {
  const h = normalizeDestination(host);
  if (!h || !Number.isInteger(port) || port < 1 || port > 65535)
    return {
      allowed: false,
      reason: "invalid_host",
      message: `"${host}:${port}" is not a valid destination`,
    };
  const deny = policy.deny.find((e) => entryMatches(e, h, port, true));
  if (deny)
    return {
      allowed: false,
      reason: "denied_by_rule",
      message: `${h}:${port} is denied by "${deny.source}"`,
    };
  const allow = policy.allow.find((e) => entryMatches(e, h, port));
  if (allow) return { allowed: true, rule: allow.source };
  return {
    allowed: false,
    reason: "not_allowed",
    message: `${h}:${port} is not in this sandbox's allow list`,
  };
}

/** The resolved address of an allowed name, against the policy's deny CIDRs. */
export function decideAddress(policy: EgressPolicy, address: string, port: number): Decision {
  const deny = policy.deny.find((e) => e.host.kind === "cidr" && entryMatches(e, address, port, true));
  if (deny)
    return {
      allowed: false,
      reason: "denied_by_rule",
      message: `${address}:${port} is denied by "${deny.source}"`,
    };
  return { allowed: true, rule: "address" };
}

/** The secrets bound to host:port (a name, never an address: interception needs a name). */
export function secretsFor(policy: EgressPolicy, host: string, port: number): SecretBinding[] {
  const h = normalizeDestination(host);
  if (!h) return [];
  return policy.secrets.filter((s) => s.hosts.some((e) => entryMatches(e, h, port)));
}

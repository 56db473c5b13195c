import { X509Certificate } from "node:crypto";
import { createServer, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { DEFAULT_FORBIDDEN, forbiddenRanges } from "../../cluster-agent/egress/addresses.ts";
import { sandboxProxyEnv } from "../../cluster-agent/egress/sandbox-env.ts";
import { newPlaceholder, SecretValue, withSecrets } from "../../cluster-agent/egress/secrets.ts";
import { readClientHello } from "../../cluster-agent/egress/sni.ts";
import { certIssuer, generateCa } from "../../cluster-agent/egress/x509.ts";
import { parseEgressPolicy } from "../../shared/egress-policy.ts";

/** The first bytes a real Node TLS client sends (its ClientHello), with `servername` or none. */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  let conn: Socket | undefined;
  const server = createServer((s) => (conn = s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    const got = new Promise<Buffer>((resolve) => {
      server.once("connection", (s: Socket) => s.once("data", (d: Buffer) => resolve(d)));
    });
    const client = tlsConnect({ host: "127.0.0.1", port, ...(servername ? { servername } : {}) });
    client.on("error", () => {});
    const hello = await got;
    client.destroy();
    return hello;
  } finally {
    conn?.destroy();
    server.close();
  }
}

describe("egress: ClientHello server name", () => {
  it("reads the SNI of a real ClientHello, and says when one is incomplete or not TLS", async () => {
    const hello = await clientHello("pkgs.test");
    expect(readClientHello(hello)).toEqual({ kind: "tls", serverName: "pkgs.test" });
    expect(readClientHello(hello.subarray(0, 3))).toEqual({ kind: "incomplete" });
    expect(readClientHello(hello.subarray(0, hello.length - 1))).toEqual({ kind: "incomplete" });
    expect(readClientHello(await clientHello(undefined))).toEqual({ kind: "tls", serverName: undefined });
    expect(readClientHello(Buffer.from("GET / HTTP/1.1\r\n"))).toEqual({ kind: "not_tls" });
  });
});

describe("egress: forbidden ranges", () => {
  const forbidden = forbiddenRanges(DEFAULT_FORBIDDEN);
  it("covers loopback, link-local/metadata, private, CGNAT, IPv6 local and IPv4-mapped forms", () => {
    for (const a of [
      "127.0.0.1",
      "169.254.169.254",
      "10.96.0.1",
      "172.16.5.4",
      "192.168.1.1",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fd00:ec2::254",
      "fe80::1",
      "::ffff:169.254.169.254",
      "::ffff:a9fe:a9fe",
      "64:ff9b::a9fe:a9fe",
      "not an address",
    ])
      expect([a, forbidden(a)]).toEqual([a, true]);
    for (const a of ["93.184.216.34", "1.1.1.1", "2606:4700::1111"])
      expect([a, forbidden(a)]).toEqual([a, false]);
  });
  it("refuses a malformed range", () => {
    expect(() => forbiddenRanges(["10.0.0.0"])).toThrow(/not a CIDR/);
  });
});

describe("egress: secrets", () => {
  it("a value never prints: not in String(), JSON or inspect", () => {
    const v = new SecretValue("sk-very-secret");
    const all = [String(v), JSON.stringify({ v }), inspect({ v }), `${v}`].join(" ");
    expect(all).not.toContain("sk-very-secret");
    expect(v.reveal()).toBe("sk-very-secret");
    expect(() => new SecretValue("a\r\nInjected: 1")).toThrow(/CR, LF/);
  });

  it("replaces the placeholder only in the bound header", () => {
    const r = parseEgressPolicy({ secrets: [{ name: "K", hosts: ["api.test"], header: "x-api-key" }] });
    if (!r.ok) throw new Error(r.issues.join());
    const placeholder = newPlaceholder();
    expect(placeholder).toMatch(/^pi-secret-[A-Za-z0-9_-]{24}$/);
    const egress = {
      tenant: "t",
      sandbox: "s",
      policy: r.policy,
      secrets: new Map([["K", { placeholder, value: new SecretValue("real") }]]),
    };
    expect(
      withSecrets(
        { "x-api-key": placeholder, authorization: `Bearer ${placeholder}` },
        r.policy.secrets,
        egress,
      ),
    ).toEqual({ "x-api-key": "real", authorization: `Bearer ${placeholder}` });
    expect(withSecrets({ "x-api-key": "pi-secret-another" }, r.policy.secrets, egress)).toEqual({
      "x-api-key": "pi-secret-another",
    });
  });
});

describe("egress: certificates from node:crypto", () => {
  it("issues a leaf the CA verifies, for names and IPv4 addresses", () => {
    const ca = generateCa("unit CA");
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    const leaf = certIssuer(ca)(["api.test", "127.0.0.2"]);
    const cert = new X509Certificate(leaf.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkHost("api.test")).toBe("api.test");
    expect(cert.checkIP("127.0.0.2")).toBe("127.0.0.2");
    expect(cert.checkHost("other.test")).toBeUndefined();
    expect(() => certIssuer({ certPem: ca.certPem, keyPem: generateCa("x").keyPem })).toThrow(
      /does not match/,
    );
  });
});

describe("egress: sandbox environment", () => {
  it("points every tool at the proxy and the bundle, and refuses a secret named like one of those", () => {
    const env = sandboxProxyEnv({ proxyUrl: "http://10.0.0.7:3128", caBundleFile: "/etc/pi/ca.pem" });
    expect(env).toMatchObject({
      HTTPS_PROXY: "http://10.0.0.7:3128",
      http_proxy: "http://10.0.0.7:3128",
      NODE_USE_ENV_PROXY: "1",
      SSL_CERT_FILE: "/etc/pi/ca.pem",
      PIP_CERT: "/etc/pi/ca.pem",
    });
    expect(() =>
      sandboxProxyEnv({ proxyUrl: "http://p:1", placeholders: new Map([["https_proxy", "pi-secret-x"]]) }),
    ).toThrow(/reserved/);
  });
});

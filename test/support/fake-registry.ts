import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CertificateAuthority, certIssuer } from "../../cluster-agent/egress/x509.ts";
import { SERVER_ADDRESS } from "./fake-internet.ts";

/**
 * A package index on the fake internet: a PEP 503 "simple" index with one pure-Python wheel and an
 * npm registry with one package, both over HTTPS as `pkgs.test` (127.0.0.2, the fake internet's
 * test CA). Both packages are built here, from nothing, so pip and npm install something real.
 */
export interface FakeRegistry {
  port: number;
  /** The host:port a policy allows. */
  host: string;
  /** Python package (import name = `PY_PACKAGE`) and npm package names. */
  pyPackage: string;
  npmPackage: string;
  /** Request paths served, in order. */
  seen: string[];
  close(): Promise<void>;
}

export const PY_PACKAGE = "pi_egress_probe";
export const NPM_PACKAGE = "pi-egress-probe";
const VERSION = "1.0.0";

const b64url = (b: Buffer) => b.toString("base64url");

/** A wheel written by hand (a zip of the module and its dist-info, RECORD with hashes). */
function buildWheel(dir: string): { file: string; bytes: Buffer } {
  const root = join(dir, "wheel");
  const info = `${PY_PACKAGE}-${VERSION}.dist-info`;
  const files: Record<string, string> = {
    [`${PY_PACKAGE}/__init__.py`]: 'MESSAGE = "installed through the egress proxy"\n',
    [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${PY_PACKAGE}\nVersion: ${VERSION}\n`,
    [`${info}/WHEEL`]: "Wheel-Version: 1.0\nGenerator: pi-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
  };
  const record = Object.entries(files).map(([p, text]) => {
    const data = Buffer.from(text);
    return `${p},sha256=${b64url(createHash("sha256").update(data).digest())},${data.length}`;
  });
  files[`${info}/RECORD`] = `${[...record, `${info}/RECORD,,`].join("\n")}\n`;
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  const file = `${PY_PACKAGE}-${VERSION}-py3-none-any.whl`;
  execFileSync("python3", ["-m", "zipfile", "-c", join(dir, file), PY_PACKAGE, info], { cwd: root });
  return { file, bytes: readFileSync(join(dir, file)) };
}

/** An npm tarball (`package/` prefix, gzip) made with the system tar. */
function buildTarball(dir: string): Buffer {
  const pkg = join(dir, "npm", "package");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, "package.json"),
    JSON.stringify({ name: NPM_PACKAGE, version: VERSION, main: "index.js" }),
  );
  writeFileSync(join(pkg, "index.js"), 'module.exports = "installed through the egress proxy";\n');
  const out = join(dir, "pkg.tgz");
  execFileSync("tar", ["-czf", out, "-C", join(dir, "npm"), "package"]);
  return readFileSync(out);
}

export async function startFakeRegistry(ca: CertificateAuthority): Promise<FakeRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "fake-registry-"));
  const wheel = buildWheel(dir);
  const tarball = buildTarball(dir);
  rmSync(dir, { recursive: true, force: true });
  const wheelSha = createHash("sha256").update(wheel.bytes).digest("hex");
  const leaf = certIssuer(ca)(["pkgs.test"]);
  const seen: string[] = [];
  let base = "";

  const send = (res: ServerResponse, type: string, body: string | Buffer) => {
    res.writeHead(200, { "content-type": type, "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    seen.push(path);
    // PEP 503: the project page links each file with its hash.
    if (path === `/simple/${PY_PACKAGE.replaceAll("_", "-")}/` || path === `/simple/${PY_PACKAGE}/`)
      return send(
        res,
        "text/html",
        `<!DOCTYPE html><html><body><a href="${base}/files/${wheel.file}#sha256=${wheelSha}">${wheel.file}</a></body></html>`,
      );
    if (path === `/files/${wheel.file}`) return send(res, "application/octet-stream", wheel.bytes);
    // The npm registry: the packument, then the tarball it names.
    if (path === `/${NPM_PACKAGE}`) {
      const tarballUrl = `${base}/${NPM_PACKAGE}/-/${NPM_PACKAGE}-${VERSION}.tgz`;
      const integrity = `sha512-${createHash("sha512").update(tarball).digest("base64")}`;
      const shasum = createHash("sha1").update(tarball).digest("hex");
      return send(
        res,
        "application/json",
        JSON.stringify({
          name: NPM_PACKAGE,
          "dist-tags": { latest: VERSION },
          versions: {
            [VERSION]: {
              name: NPM_PACKAGE,
              version: VERSION,
              dist: { tarball: tarballUrl, integrity, shasum },
            },
          },
        }),
      );
    }
    if (path === `/${NPM_PACKAGE}/-/${NPM_PACKAGE}-${VERSION}.tgz`)
      return send(res, "application/octet-stream", tarball);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  };

  const server = createServer({ cert: `${leaf.certPem}${ca.certPem}`, key: leaf.keyPem }, handle);
  const port = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, SERVER_ADDRESS, () => resolve((server.address() as AddressInfo).port));
  });
  base = `https://pkgs.test:${port}`;
  return {
    port,
    host: `pkgs.test:${port}`,
    pyPackage: PY_PACKAGE,
    npmPackage: NPM_PACKAGE,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

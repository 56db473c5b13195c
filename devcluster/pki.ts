import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** PEM material for devcluster's TLS hops (client → API server → kubelet), as a kubeadm cluster has it. */
export interface KubeletPki {
  /** The CA every side trusts (API server and kubelet serving certs, the API server's client cert). */
  ca: string;
  /** The API server's serving certificate (SAN 127.0.0.1, localhost) and key: the kubeconfig trusts `ca`. */
  apiServerCert: string;
  apiServerKey: string;
  /** The kubelet's serving certificate (SAN 127.0.0.1, localhost) and key. */
  kubeletCert: string;
  kubeletKey: string;
  /** `--kubelet-client-certificate/-key`: CN kube-apiserver-kubelet-client, O system:masters. */
  apiClientCert: string;
  apiClientKey: string;
}

const DAYS = "2";

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd, timeout: 10_000 });
}

async function issue(dir: string, name: string, subject: string, ext: string): Promise<void> {
  await openssl(
    ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ]),
    dir,
  );
  await writeFile(join(dir, `${name}.ext`), ext);
  await openssl(
    ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"].concat([
      "-days",
      DAYS,
      "-extfile",
      `${name}.ext`,
      "-out",
      `${name}.crt`,
    ]),
    dir,
  );
}

/**
 * A throw-away CA and the certificates of the client → API server → kubelet hops, made with the
 * `openssl` CLI (Node has no X.509 writer) into `dir` (0700), valid for two days.
 */
export async function makeKubeletPki(dir: string, nodeName: string): Promise<KubeletPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await openssl(
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      DAYS,
      "-subj",
      "/CN=devcluster-ca",
    ]),
    dir,
  );
  await issue(
    dir,
    "kubelet",
    `/O=system:nodes/CN=system:node:${nodeName}`,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
  );
  await issue(
    dir,
    "apiserver",
    "/CN=kube-apiserver",
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
  );
  await issue(
    dir,
    "apiserver-kubelet-client",
    "/O=system:masters/CN=kube-apiserver-kubelet-client",
    "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
  );
  const r = (f: string) => readFile(join(dir, f), "utf8");
  return {
    ca: await r("ca.crt"),
    apiServerCert: await r("apiserver.crt"),
    apiServerKey: await r("apiserver.key"),
    kubeletCert: await r("kubelet.crt"),
    kubeletKey: await r("kubelet.key"),
    apiClientCert: await r("apiserver-kubelet-client.crt"),
    apiClientKey: await r("apiserver-kubelet-client.key"),
  };
}

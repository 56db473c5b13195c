import { rootCertificates } from "node:tls";
import type { V1Secret } from "@kubernetes/client-node";
import { type CertificateAuthority, generateCa } from "../egress/x509.ts";
import type { KubeClients } from "../k8s/client.ts";
import { deadline } from "../k8s/deadline.ts";
import { isConflict, isNotFound, k8sFailure } from "../k8s/errors.ts";

export const EGRESS_CA_SECRET = "pi-sandbox-egress-ca";

const fromSecret = (s: V1Secret): CertificateAuthority | undefined => {
  const cert = s.data?.["ca.crt"];
  const key = s.data?.["ca.key"];
  return cert && key
    ? { certPem: Buffer.from(cert, "base64").toString(), keyPem: Buffer.from(key, "base64").toString() }
    : undefined;
};

/**
 * The cluster's egress CA (one for every replica, so a sandbox trusts whichever proxy it reaches):
 * read from its Secret, or made and stored by the first replica that finds none (a create race
 * is settled by the API server: the loser reads the winner's).
 */
export async function loadOrCreateEgressCa(
  clients: Pick<KubeClients, "core">,
  namespace: string,
  timeoutMs = 5_000,
): Promise<CertificateAuthority> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const found = fromSecret(
        await clients.core.readNamespacedSecret({ name: EGRESS_CA_SECRET, namespace }, deadline(timeoutMs)),
      );
      if (!found) throw new Error(`Secret ${namespace}/${EGRESS_CA_SECRET} has no ca.crt and ca.key`);
      return found;
    } catch (e) {
      if (!isNotFound(k8sFailure(e))) throw e;
    }
    const ca = generateCa("pi-sandbox-runtime egress CA");
    try {
      await clients.core.createNamespacedSecret(
        {
          namespace,
          body: {
            apiVersion: "v1",
            kind: "Secret",
            type: "Opaque",
            metadata: { name: EGRESS_CA_SECRET, namespace },
            data: {
              "ca.crt": Buffer.from(ca.certPem).toString("base64"),
              "ca.key": Buffer.from(ca.keyPem).toString("base64"),
            },
          },
        },
        deadline(timeoutMs),
      );
      return ca;
    } catch (e) {
      if (!isConflict(k8sFailure(e))) throw e;
    }
  }
  throw new Error("the egress CA Secret could not be read or created");
}

/**
 * What a sandbox's CA variables point at: the usual public roots (Node's Mozilla bundle) plus the
 * cluster CA. A whole bundle rather than the CA alone, because SSL_CERT_FILE and friends replace a
 * tool's store: with the CA alone every spliced (not intercepted) host would fail verification.
 */
export const egressCaBundle = (ca: CertificateAuthority): string =>
  `${rootCertificates.join("\n")}\n${ca.certPem.trim()}\n`;

import { BlockList, isIP } from "node:net";
import { parseIp } from "../../shared/egress-policy.ts";

/**
 * Where a sandbox's traffic may never go, whatever its policy says: the proxy checks the address it
 * resolved and then connects to exactly that address, so a name that resolves (or re-resolves) to
 * one of these is refused (DNS rebinding included). The deployment adds its cluster, pod and
 * service ranges; most clusters use RFC 1918 space, which is in the list already.
 */
export const DEFAULT_FORBIDDEN: readonly string[] = [
  "0.0.0.0/8", // "this network"
  "10.0.0.0/8",
  "100.64.0.0/10", // carrier-grade NAT (some clusters' pod ranges)
  "127.0.0.0/8", // loopback
  "169.254.0.0/16", // link-local, incl. the cloud metadata address 169.254.169.254
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "224.0.0.0/4", // multicast
  "240.0.0.0/4", // reserved + broadcast
  "::/128",
  "::1/128",
  "64:ff9b::/96", // NAT64: maps onto IPv4, including the ranges above
  "64:ff9b:1::/48",
  "2002::/16", // 6to4: same
  "fc00::/7", // unique local, incl. fd00:ec2::254 (AWS IPv6 metadata)
  "fe80::/10",
  "ff00::/8",
];

export type AddressCheck = (address: string) => boolean;

/** `forbidden(address)`: true when the address is in one of the CIDRs (IPv4-mapped IPv6 checked as IPv4). */
export function forbiddenRanges(cidrs: readonly string[]): AddressCheck {
  const list = new BlockList();
  for (const c of cidrs) {
    const [net, bits] = c.split("/");
    const family = isIP(net ?? "");
    if (!family || bits === undefined) throw new Error(`forbidden range "${c}" is not a CIDR`);
    list.addSubnet(net as string, Number(bits), family === 4 ? "ipv4" : "ipv6");
  }
  return (address) => {
    const ip = parseIp(address);
    if (!ip) return true;
    if (ip.family === 4) {
      const v = ip.value;
      const dotted = [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
      return list.check(dotted, "ipv4");
    }
    return list.check(address, "ipv6");
  };
}

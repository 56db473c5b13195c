export { startKubelet } from "./kubelet.ts";
export type { EgressProxyRoute, ExecProtocol, ImageSpec, Kubelet, KubeletOptions } from "./types.ts";

export { startKubelet } from "./kubelet.ts";
export type { ExecProtocol, ImageSpec, Kubelet, KubeletOptions } from "./types.ts";

export { startKubelet } from "./kubelet.ts";
export type { ImageSpec, Kubelet, KubeletOptions } from "./types.ts";

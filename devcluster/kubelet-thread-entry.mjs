// The kubelet thread's entry (see kubelet-thread.ts): plain .mjs so a Worker can start it under any
// runner (tsx, vitest, plain node); it loads the TypeScript through tsx's API.
import { tsImport } from "tsx/esm/api";

await tsImport("./kubelet-thread-main.ts", import.meta.url);

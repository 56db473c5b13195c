// The kubelet process's entry (see kubelet-process.ts): plain .mjs so it starts under plain node
// whatever runs devcluster (tsx, vitest, node); it loads the TypeScript through tsx's API.
import { tsImport } from "tsx/esm/api";

await tsImport("./kubelet-process-main.ts", import.meta.url);

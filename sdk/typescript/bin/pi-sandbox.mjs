#!/usr/bin/env node
// The CLI's entry. The package ships TypeScript source: Node ≥ 22.18 runs it natively (type
// stripping); older Nodes (this repository's Node 20) load it through tsx, a devDependency here.
if (!process.features?.typescript) {
  const { register } = await import("tsx/esm/api");
  register();
}
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));

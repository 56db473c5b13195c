#!/usr/bin/env node
// The CLI's entry: the compiled package (dist/), plain Node ≥ 20. In a checkout of the repository,
// `npm install` (the root's prepare script) makes dist/.
const { main } = await import("../dist/cli.js");
process.exitCode = await main(process.argv.slice(2));

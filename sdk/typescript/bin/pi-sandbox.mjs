#!/usr/bin/env node
// The CLI's entry. The package ships TypeScript source, loaded through tsx (a devDependency of
// this repository). Node's own type stripping is only the fallback: it cannot run the source's
// constructor parameter properties, so it works only once those are gone.
try {
  const { register } = await import("tsx/esm/api");
  register();
} catch (e) {
  if (!process.features?.typescript) throw e;
}
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));

// The bindings the Worker under test gets from wrangler.toml, for `env` from cloudflare:test.
type EdgeEnvForTests = import("../../edge/env.ts").Env;
declare namespace Cloudflare {
  interface Env extends EdgeEnvForTests {}
}

import type { MiddlewareHandler } from "hono";
import { AppError } from "../../shared/errors.ts";
import type { AppEnv } from "../app-env.ts";
import { isLocalHost } from "../config.ts";

/**
 * A dev or test edge runs with keys that are generated locally or committed: deployed under a public
 * name (a plain `wrangler deploy` of a dev config) anyone could mint tokens for it. So it answers
 * nothing but 421 `host_not_allowed` on a hostname that is not local (config.ts isLocalHost).
 */
export function localOnlyInDev(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const { environment, localHosts } = c.get("deps").config;
    if (environment === "dev" || environment === "test") {
      const host = new URL(c.req.url).hostname;
      if (!isLocalHost(host, localHosts)) {
        throw new AppError(
          "host_not_allowed",
          `a ${environment} edge answers only on local hostnames (loopback, *.localhost, *.test, LOCAL_HOSTS), not "${host}"`,
        );
      }
    }
    await next();
  };
}

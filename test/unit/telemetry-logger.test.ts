import { describe, expect, it } from "vitest";
import {
  createLogger,
  REDACTED,
  requestLogger,
  scrubString,
  withRequestContext,
} from "../../cluster-agent/telemetry/logger.ts";

function capture() {
  const raw: string[] = [];
  const logger = createLogger({
    level: "debug",
    base: { agentId: "agent-t", region: "eu" },
    destination: { write: (s: string) => raw.push(s) },
  });
  const lines = () => raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, raw, lines };
}

const JWT =
  "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1c2VyIiwic2NvcGUiOiJzYW5kYm94OmFkbWluIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";

describe("agent logger", () => {
  it("writes JSON lines with level label, time, service and base fields", () => {
    const { logger, lines } = capture();
    logger.info("started");
    const [l] = lines();
    expect(l).toMatchObject({
      level: "info",
      msg: "started",
      service: "cluster-agent",
      agentId: "agent-t",
      region: "eu",
    });
    expect(typeof l!.time).toBe("string");
  });

  it("a request logger puts requestId (and tenant) on every line, children included", () => {
    const { logger, lines } = capture();
    const log = requestLogger(logger, { requestId: "req-123", tenant: "acme" });
    log.info("lease acquired");
    log.warn({ pod: "pi-sandbox-1" }, "slow exec");
    log.child({ pod: "pi-sandbox-1" }).error("exec failed");
    const ls = lines();
    expect(ls).toHaveLength(3);
    for (const l of ls) expect(l).toMatchObject({ requestId: "req-123", tenant: "acme" });
  });

  it("inside withRequestContext the root logger adds the requestId, across awaits, exactly once", async () => {
    const { logger, raw, lines } = capture();
    await withRequestContext({ requestId: "req-ctx" }, async () => {
      logger.info("before await");
      await new Promise((r) => setTimeout(r, 5));
      logger.info("after await");
      requestLogger(logger, { requestId: "req-ctx" }).info("child too");
    });
    logger.info("outside");
    const ls = lines();
    expect(ls.slice(0, 3).map((l) => l.requestId)).toEqual(["req-ctx", "req-ctx", "req-ctx"]);
    expect(ls[3]!.requestId).toBeUndefined();
    // never two requestId keys on one line
    for (const r of raw) expect(r.match(/"requestId"/g)?.length ?? 0).toBeLessThanOrEqual(1);
  });

  it("redacts Authorization headers, tokens and secrets in fields at any depth", () => {
    const { logger, raw, lines } = capture();
    logger.info(
      {
        req: {
          method: "POST",
          headers: { authorization: `Bearer ${JWT}`, "x-relay-signature": "sig.sig.sig" },
        },
        headers: { Authorization: "Bearer abc.def.ghi" },
        token: "tok-1",
        poolToken: "pool-secret-1",
        config: { openai: { apiKey: "sk-test-abcdef" }, POOL_TOKEN: "pool-secret-2" },
        deep: { a: { b: { c: { refresh_token: "rt-xyz" } } } },
        pod: "pi-sandbox-1",
      },
      "relay",
    );
    const [l] = lines();
    const req = l!.req as { headers: Record<string, string>; method: string };
    expect(req.headers.authorization).toBe(REDACTED);
    expect(req.headers["x-relay-signature"]).toBe(REDACTED);
    expect(req.method).toBe("POST");
    expect((l!.headers as Record<string, string>).Authorization).toBe(REDACTED);
    expect(l!.token).toBe(REDACTED);
    expect(l!.poolToken).toBe(REDACTED);
    expect(l!.pod).toBe("pi-sandbox-1");
    const text = raw.join("");
    for (const secret of [
      "abc.def.ghi",
      JWT,
      "tok-1",
      "pool-secret-1",
      "pool-secret-2",
      "sk-test-abcdef",
      "rt-xyz",
      "sig.sig.sig",
    ]) {
      expect(text).not.toContain(secret);
    }
  });

  it("scrubs bearer tokens, JWTs and token= parameters inside messages and string values", () => {
    const { logger, raw } = capture();
    logger.warn(`upstream said 401 for Authorization: Bearer ${JWT}`);
    logger.info({ url: "/dashboard?token=abc123&x=1", note: `got ${JWT} from client` }, "request");
    requestLogger(logger, { requestId: "r", authorization: "Bearer child-secret" }).info("child binding");
    const text = raw.join("");
    expect(text).not.toContain(JWT);
    expect(text).not.toContain("abc123");
    expect(text).not.toContain("child-secret");
    expect(text).toContain("Bearer [redacted]");
    expect(text).toContain("token=[redacted]&x=1");
  });

  it("scrubString leaves ordinary text alone", () => {
    expect(scrubString("exit code 0 after 12 ms on pi-sandbox-3")).toBe(
      "exit code 0 after 12 ms on pi-sandbox-3",
    );
  });
});

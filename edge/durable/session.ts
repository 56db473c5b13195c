import { DurableObject } from "cloudflare:workers";
import type { ChatHistoryMessage } from "../../shared/api.ts";
import type { Env } from "../env.ts";

export interface SessionMessage extends ChatHistoryMessage {
  at: string;
  requestId: string;
}

export interface SessionView {
  sessionId: string;
  createdAt: string;
  updatedAt: string;
  messages: SessionMessage[];
}

/** Most messages kept per session (oldest dropped); the relay sends at most 200 as history. */
const MAX_MESSAGES = 400;

/**
 * Chat history of one (tenant, session), in the DO's SQLite storage. The DO is named by both, so
 * another tenant's id reaches a different object; the stored tenant is checked as well, so a
 * naming mistake elsewhere cannot leak a session across tenants.
 */
export class SessionDO extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.ensureSchema();
  }

  private ensureSchema(): void {
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (
      id INTEGER PRIMARY KEY CHECK (id = 1), tenant TEXT NOT NULL, session_id TEXT NOT NULL,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS messages (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, role TEXT NOT NULL, content TEXT NOT NULL,
      at TEXT NOT NULL, request_id TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS sandbox (
      id INTEGER PRIMARY KEY CHECK (id = 1), sandbox_id TEXT NOT NULL)`);
  }

  private owner(): { tenant: string; sessionId: string; createdAt: string; updatedAt: string } | null {
    const row = this.sql
      .exec<{ tenant: string; session_id: string; created_at: string; updated_at: string }>(
        "SELECT tenant, session_id, created_at, updated_at FROM meta WHERE id = 1",
      )
      .toArray()[0];
    return row
      ? {
          tenant: row.tenant,
          sessionId: row.session_id,
          createdAt: row.created_at,
          updatedAt: row.updated_at,
        }
      : null;
  }

  /** The session, or null if it does not exist for this tenant. */
  read(tenant: string, sessionId: string): SessionView | null {
    const o = this.owner();
    if (!o || o.tenant !== tenant || o.sessionId !== sessionId) return null;
    const messages = this.sql
      .exec<{ role: string; content: string; at: string; request_id: string }>(
        "SELECT role, content, at, request_id FROM messages ORDER BY seq",
      )
      .toArray()
      .map((r) => ({
        role: r.role === "assistant" ? ("assistant" as const) : ("user" as const),
        content: r.content,
        at: r.at,
        requestId: r.request_id,
      }));
    return { sessionId, createdAt: o.createdAt, updatedAt: o.updatedAt, messages };
  }

  /** The last `limit` messages as model history (empty for a new session). */
  history(tenant: string, sessionId: string, limit = 200): ChatHistoryMessage[] {
    const view = this.read(tenant, sessionId);
    return view ? view.messages.slice(-limit).map(({ role, content }) => ({ role, content })) : [];
  }

  /** The sandbox bound to the session (`sandbox: "session"`), or null. */
  sandboxOf(tenant: string, sessionId: string): string | null {
    const o = this.owner();
    if (!o || o.tenant !== tenant || o.sessionId !== sessionId) return null;
    const row = this.sql
      .exec<{ sandbox_id: string }>("SELECT sandbox_id FROM sandbox WHERE id = 1")
      .toArray()[0];
    return row?.sandbox_id ?? null;
  }

  /**
   * Append messages, creating the session for `tenant`; refuses a session owned by another tenant.
   * `sandboxId` (session mode) rebinds the session's sandbox: null unbinds, undefined leaves it.
   */
  append(
    tenant: string,
    sessionId: string,
    requestId: string,
    messages: ChatHistoryMessage[],
    sandboxId?: string | null,
  ): boolean {
    const now = new Date().toISOString();
    const o = this.owner();
    if (o && (o.tenant !== tenant || o.sessionId !== sessionId)) return false;
    if (!o) {
      this.sql.exec(
        "INSERT INTO meta (id, tenant, session_id, created_at, updated_at) VALUES (1, ?, ?, ?, ?)",
        tenant,
        sessionId,
        now,
        now,
      );
    } else {
      this.sql.exec("UPDATE meta SET updated_at = ? WHERE id = 1", now);
    }
    for (const m of messages) {
      this.sql.exec(
        "INSERT INTO messages (role, content, at, request_id) VALUES (?, ?, ?, ?)",
        m.role,
        m.content,
        now,
        requestId,
      );
    }
    this.sql.exec("DELETE FROM messages WHERE seq <= (SELECT MAX(seq) FROM messages) - ?", MAX_MESSAGES);
    if (sandboxId === null) this.sql.exec("DELETE FROM sandbox");
    else if (sandboxId !== undefined)
      this.sql.exec("INSERT OR REPLACE INTO sandbox (id, sandbox_id) VALUES (1, ?)", sandboxId);
    return true;
  }

  /** Delete the session; false if it did not exist for this tenant. */
  async remove(tenant: string, sessionId: string): Promise<boolean> {
    const o = this.owner();
    if (!o || o.tenant !== tenant || o.sessionId !== sessionId) return false;
    await this.ctx.storage.deleteAll();
    // deleteAll drops the tables too; recreate them for any later use of this object.
    this.ensureSchema();
    return true;
  }
}

/** The DO name for a (tenant, session): JSON keeps `a:b`+`c` distinct from `a`+`b:c`. */
export const sessionObjectName = (tenant: string, sessionId: string): string =>
  JSON.stringify([tenant, sessionId]);

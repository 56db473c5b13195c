import { SandboxApiError } from "./errors.ts";
import type { ProcessExit } from "./types.ts";

/** The terminal's subprotocol (`GET …/processes/:pid/tty`); the token rides beside it as `bearer.<jwt>`. */
export const TERMINAL_SUBPROTOCOL = "pi-sandbox.terminal.v1";

/** Longest wait for the WebSocket handshake when the caller gives none. */
const OPEN_TIMEOUT_MS = 30_000;

export interface AttachOptions {
  /** Output offset to start from (default 0: what the ring still holds; the `outputBytes` you saw skips history). */
  since?: number;
  /** Closes the terminal (the process runs on). */
  signal?: AbortSignal;
  /** The handshake's timeout in ms (default 30 000). */
  timeoutMs?: number;
}

/** How a terminal session ended: the process's exit if it ended, else the socket's close. */
export interface TerminalEnd {
  /** Set when the process exited (close `1000 exited`). */
  exit: ProcessExit | undefined;
  code: number;
  reason: string;
}

type ServerMessage =
  | { type: "dropped"; bytes: number }
  | { type: "error"; code: string; message: string }
  | ({ type: "exit" } & ProcessExit);

/**
 * An open terminal of a `tty` process: bytes to its stdin with `write`, its output through `onData`,
 * `resize`, and `ended` (how it ended). Closing it ends the attach, never the process. Runs on the
 * global WebSocket (browsers, Node 22+), which cannot send headers: the token is a subprotocol.
 */
export class Terminal {
  /** Terminal output, in order. */
  onData: (bytes: Uint8Array) => void = () => {};
  /** Output the ring had dropped before the next bytes (this reader was behind). */
  onDropped: (bytes: number) => void = () => {};
  /** A refused keystroke batch or resize (e.g. `stdin_busy`): the terminal stays open. */
  onError: (e: { code: string; message: string }) => void = () => {};
  /** Resolves once the socket is closed. */
  readonly ended: Promise<TerminalEnd>;
  private exit: ProcessExit | undefined;

  private constructor(private readonly ws: WebSocket) {
    this.ended = new Promise((resolve) => {
      ws.addEventListener("close", (e) => resolve({ exit: this.exit, code: e.code, reason: e.reason }));
    });
    ws.addEventListener("message", (e) => {
      if (typeof e.data === "string") this.control(e.data);
      else this.onData(new Uint8Array(e.data as ArrayBuffer));
    });
  }

  /** Opens the socket; rejects with `network_error`/`client_timeout` if the handshake fails. */
  static open(url: string, token: string, opts: AttachOptions = {}): Promise<Terminal> {
    const WS = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    if (!WS) {
      return Promise.reject(
        new SandboxApiError({
          code: "network_error",
          message: "no global WebSocket here: a terminal needs Node 22+ or a browser",
          status: 0,
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const ws = new WS(url, [TERMINAL_SUBPROTOCOL, `bearer.${token}`]);
      ws.binaryType = "arraybuffer";
      const fail = (code: "network_error" | "client_timeout" | "request_cancelled", message: string) => {
        cleanup();
        ws.close();
        reject(new SandboxApiError({ code, message, status: 0 }));
      };
      const timer = setTimeout(
        () => fail("client_timeout", "the terminal did not open in time"),
        opts.timeoutMs ?? OPEN_TIMEOUT_MS,
      );
      const onAbort = () => fail("request_cancelled", "the attach was aborted");
      const onError = () => fail("network_error", "the terminal WebSocket was refused or cut");
      const cleanup = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        ws.removeEventListener("error", onError);
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      ws.addEventListener("error", onError);
      // Built before open so no early message is missed.
      const t = new Terminal(ws);
      ws.addEventListener("open", () => {
        cleanup();
        opts.signal?.addEventListener("abort", () => t.close(), { once: true });
        resolve(t);
      });
    });
  }

  /** Keystrokes (or any bytes) to the process's stdin; ignored once the socket is closing. */
  write(data: string | Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(
      typeof data === "string" ? new TextEncoder().encode(data) : (data as Uint8Array<ArrayBuffer>),
    );
  }

  resize(cols: number, rows: number): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  /** Ends the attach; the process runs on. */
  close(): void {
    if (this.ws.readyState === this.ws.CLOSING || this.ws.readyState === this.ws.CLOSED) return;
    this.ws.close(1000, "detached");
  }

  private control(text: string): void {
    let m: ServerMessage;
    try {
      m = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (m.type === "dropped") this.onDropped(m.bytes);
    else if (m.type === "error") this.onError({ code: m.code, message: m.message });
    else if (m.type === "exit") {
      this.exit = {
        exitCode: m.exitCode,
        signal: m.signal,
        timedOut: m.timedOut,
        outputBytes: m.outputBytes,
      };
    }
  }
}

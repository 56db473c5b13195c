export type StreamName = "stdout" | "stderr";

/**
 * Keeps the first `capBytes` of each stream and counts every byte, so both executors compute
 * caps, truncation and byte counts the same way. `push` returns the part of a chunk that is
 * kept (empty once the cap is reached); that part is what callers forward to `onOutput`.
 */
export class OutputCapture {
  readonly capBytes: number;
  readonly #kept: Record<StreamName, Uint8Array[]> = { stdout: [], stderr: [] };
  readonly #keptBytes: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  readonly #seenBytes: Record<StreamName, number> = { stdout: 0, stderr: 0 };

  constructor(capBytes: number) {
    if (!Number.isInteger(capBytes) || capBytes < 0)
      throw new RangeError("capBytes must be a non-negative integer");
    this.capBytes = capBytes;
  }

  push(stream: StreamName, chunk: Uint8Array): Uint8Array {
    this.#seenBytes[stream] += chunk.byteLength;
    const room = this.capBytes - this.#keptBytes[stream];
    if (room <= 0 || chunk.byteLength === 0) return new Uint8Array(0);
    // Copy: the caller's buffer may be pooled or reused after this returns.
    const part = Uint8Array.from(chunk.byteLength > room ? chunk.subarray(0, room) : chunk);
    this.#kept[stream].push(part);
    this.#keptBytes[stream] += part.byteLength;
    return part;
  }

  /**
   * The outcome's output fields. `reported` carries byte counts (and a truncation flag) measured
   * upstream — the exec server counts bytes it never sent — and wins over what arrived here.
   */
  finish(
    reported?: { stdoutBytes: number; stderrBytes: number; truncated: boolean },
    encoding: "utf8" | "base64" = "utf8",
  ): {
    stdout: string;
    stderr: string;
    stdoutBytes: number;
    stderrBytes: number;
    truncated: boolean;
  } {
    const stdoutBytes = Math.max(reported?.stdoutBytes ?? 0, this.#seenBytes.stdout);
    const stderrBytes = Math.max(reported?.stderrBytes ?? 0, this.#seenBytes.stderr);
    const truncated =
      (reported?.truncated ?? false) || stdoutBytes > this.capBytes || stderrBytes > this.capBytes;
    return {
      stdout: decode(this.#kept.stdout, stdoutBytes > this.#keptBytes.stdout, encoding),
      stderr: decode(this.#kept.stderr, stderrBytes > this.#keptBytes.stderr, encoding),
      stdoutBytes,
      stderrBytes,
      truncated,
    };
  }
}

/** UTF-8 text of the kept bytes; a character cut in half by the cap is dropped, not turned into U+FFFD. */
function decode(parts: Uint8Array[], cut: boolean, encoding: "utf8" | "base64"): string {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  // base64 keeps every byte exactly (binary output); utf8 text drops a character cut by the cap.
  if (encoding === "base64")
    return Buffer.from(all.buffer, all.byteOffset, all.byteLength).toString("base64");
  return new TextDecoder().decode(cut ? all.subarray(0, completeUtf8Length(all)) : all);
}

/** Length of `bytes` without a trailing incomplete UTF-8 sequence. */
export function completeUtf8Length(bytes: Uint8Array): number {
  const n = bytes.byteLength;
  // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
  for (let back = 1; back <= Math.min(4, n); back++) {
    const b = bytes[n - back] ?? 0;
    if ((b & 0xc0) === 0x80) continue; // continuation byte
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

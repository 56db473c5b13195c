// Portable (TextEncoder, not Buffer): the chat loop in Node and the MCP server in workerd both cap with it.
const utf8 = new TextDecoder();

/**
 * Shortens one output stream for the model: the first `headBytes` and last `tailBytes`, joined by a
 * notice with the true byte counts. `totalBytes` is what the command really wrote, which can exceed
 * what the sandbox captured (the exec server caps each stream and keeps its beginning); the notice
 * then says that the tail shown is the tail of the captured part.
 */
export function truncateForModel(
  text: string,
  opts: { totalBytes: number; headBytes: number; tailBytes: number },
): { text: string; truncated: boolean } {
  const bytes = new TextEncoder().encode(text);
  const captured = bytes.length;
  const total = Math.max(opts.totalBytes, captured);
  if (captured <= opts.headBytes + opts.tailBytes) {
    if (captured === total) return { text, truncated: false };
    return {
      text: `${text}\n[output truncated: the command wrote ${total} bytes; only the first ${captured} bytes were captured]`,
      truncated: true,
    };
  }
  const headEnd = charBoundaryAtOrBefore(bytes, opts.headBytes);
  const tailStart = charBoundaryAtOrAfter(bytes, captured - opts.tailBytes);
  const head = utf8.decode(bytes.subarray(0, headEnd));
  const tail = utf8.decode(bytes.subarray(tailStart));
  const omitted = tailStart - headEnd;
  const capturedNote =
    captured < total
      ? `; only the first ${captured} bytes were captured, so the end shown is the end of that part`
      : "";
  const notice =
    `[output truncated: the command wrote ${total} bytes; showing the first ${headEnd} and the last ` +
    `${captured - tailStart} bytes, ${omitted} bytes omitted${capturedNote}]`;
  return { text: `${head}\n${notice}\n${tail}`, truncated: true };
}

// UTF-8 continuation bytes are 0b10xxxxxx: never cut in front of one, or a character is split in two.
const isContinuation = (b: number | undefined) => b !== undefined && (b & 0xc0) === 0x80;

function charBoundaryAtOrBefore(bytes: Uint8Array, i: number): number {
  let j = Math.min(i, bytes.length);
  while (j > 0 && isContinuation(bytes[j])) j--;
  return j;
}

function charBoundaryAtOrAfter(bytes: Uint8Array, i: number): number {
  let j = Math.max(i, 0);
  while (j < bytes.length && isContinuation(bytes[j])) j++;
  return j;
}

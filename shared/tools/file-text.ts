import { err, ok, type Result } from "../errors.ts";

/** What the file tools show the model at most; the true size is always reported next to a cut. */
export const FILE_CAPS = {
  /** Lines returned by one read_file call unless `limit` says fewer. */
  readLines: 2000,
  /** Bytes of numbered text returned by one read_file call. */
  readBytes: 64 * 1024,
  /** A longer line is cut (models rarely need minified bundles verbatim). */
  lineChars: 2000,
  /** Entries returned by one list_files call. */
  listEntries: 500,
  /** Largest file edit_file rewrites (it reads, edits and writes the whole file). */
  editBytes: 4 * 1024 * 1024,
} as const;

const SNIFF_BYTES = 8192;

/** Binary: a NUL in the first 8 KiB, or bytes that are not UTF-8. */
export function isBinary(bytes: Uint8Array): boolean {
  if (bytes.subarray(0, SNIFF_BYTES).includes(0)) return true;
  try {
    new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
    return false;
  } catch {
    return true;
  }
}

export interface NumberedText {
  /** `cat -n` style: right-aligned 1-based number, a tab, the line. */
  content: string;
  startLine: number;
  /** Last line included (startLine - 1 when nothing is). */
  endLine: number;
  totalLines: number;
  truncated: boolean;
  notice: string | undefined;
}

/** Lines `offset`..`offset+limit-1` (1-based) of `text`, numbered and capped by FILE_CAPS. */
export function numberedLines(text: string, offset = 1, limit: number = FILE_CAPS.readLines): NumberedText {
  const lines = text.split("\n");
  // A final newline ends the last line; it does not start another one.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const totalLines = lines.length;
  const wanted = Math.min(limit, FILE_CAPS.readLines);
  const out: string[] = [];
  let bytes = 0;
  let cutLines = 0;
  let byteCapped = false;
  let i = offset - 1;
  for (; i < totalLines && out.length < wanted; i++) {
    let line = lines[i]!;
    if (line.length > FILE_CAPS.lineChars) {
      line = `${line.slice(0, FILE_CAPS.lineChars)} [line cut: ${line.length} characters]`;
      cutLines++;
    }
    const numbered = `${String(i + 1).padStart(6)}\t${line}`;
    const size = new TextEncoder().encode(numbered).length + 1;
    if (bytes + size > FILE_CAPS.readBytes && out.length > 0) {
      byteCapped = true;
      break;
    }
    bytes += size;
    out.push(numbered);
  }
  const endLine = offset - 1 + out.length;
  const more = endLine < totalLines;
  const notes: string[] = [];
  if (more) {
    const why = byteCapped ? ` (the ${FILE_CAPS.readBytes}-byte cap of one read)` : "";
    notes.push(
      `[showing lines ${out.length === 0 ? "none" : `${offset}-${endLine}`} of ${totalLines}${why}; ` +
        `read on with offset=${endLine + 1}]`,
    );
  }
  if (cutLines > 0)
    notes.push(`[${cutLines} line(s) longer than ${FILE_CAPS.lineChars} characters were cut]`);
  return {
    content: out.join("\n"),
    startLine: offset,
    endLine,
    totalLines,
    truncated: more || cutLines > 0,
    notice: notes.length > 0 ? notes.join("\n") : undefined,
  };
}

export type EditFailure = "edit_not_found" | "edit_not_unique" | "edit_no_change";

/**
 * Replace `oldString` by `newString` in `text`: exactly one occurrence unless `replaceAll`.
 * Failures are values with a sentence the model can act on; nothing is written on failure.
 */
export function applyEdit(
  text: string,
  edit: { oldString: string; newString: string; replaceAll: boolean },
): Result<{ text: string; replacements: number }, { code: EditFailure; message: string }> {
  if (edit.oldString === edit.newString) {
    return err({ code: "edit_no_change", message: "old_string and new_string are the same; nothing to do" });
  }
  const count = text.split(edit.oldString).length - 1;
  if (count === 0) {
    return err({
      code: "edit_not_found",
      message:
        "old_string was not found in the file (it must match exactly, whitespace included); read the file first",
    });
  }
  if (count > 1 && !edit.replaceAll) {
    return err({
      code: "edit_not_unique",
      message: `old_string occurs ${count} times; include more surrounding lines to make it unique, or set replace_all`,
    });
  }
  return ok({ text: text.split(edit.oldString).join(edit.newString), replacements: count });
}

/**
 * One FileEntry: shared/api.ts declares it; the exec server, which may import nothing outside its
 * folder, mirrors it. A drift in either fails type-checking here (and the schema check below).
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import type { FileEntry as ServerFileEntry } from "../../cluster-agent/sandbox-server/files.ts";
import { type FileEntry, FileEntrySchema } from "../../shared/api.ts";

describe("FileEntry", () => {
  it("the exec server's listing entry is shared/api.ts's FileEntry", () => {
    expectTypeOf<ServerFileEntry>().toEqualTypeOf<FileEntry>();
    const entry: ServerFileEntry = { name: "a", type: "symlink", size: 0, mtime: new Date(0).toISOString() };
    expect(FileEntrySchema.parse(entry)).toEqual(entry);
  });
});

import { chmod, lstat, readdir, rm, rmdir, unlink } from "node:fs/promises";

/** Entries directly in `dir` (dot files included); 0 when it does not exist. */
export async function countEntries(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).length;
  } catch {
    return 0;
  }
}

/**
 * Removes everything inside `dir` but keeps `dir` (a mount point). A command may have left
 * directories without write or search permission (chmod 000), which a plain recursive rm cannot
 * enter as a non-root user: those are opened up first. Returns the number of top-level entries removed.
 */
export async function emptyDir(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const path = `${dir}/${name}`;
    try {
      await rm(path, { recursive: true, force: true });
    } catch {
      await removeStubborn(path);
    }
    removed += 1;
  }
  return removed;
}

async function removeStubborn(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isDirectory()) {
    await unlink(path).catch(() => {});
    return;
  }
  await chmod(path, 0o700).catch(() => {});
  const names = await readdir(path).catch(() => [] as string[]);
  for (const name of names) await removeStubborn(`${path}/${name}`);
  await rmdir(path).catch(() => {});
}

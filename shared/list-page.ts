/**
 * One page of a directory listing, bounded by entries AND by bytes, with a cursor to the next page.
 * Pure and dependency-free: the exec server in the pod (which may import only a few shared files)
 * and the agent's api-mode files both build their pages with it, so both modes page alike.
 *
 * Order: breadth-first, names sorted within a directory — which is the same as ordering relative
 * paths by (depth, then component by component). That order is total over names alone, so the
 * cursor is the last name a page returned (`after`), not an offset: entries created or deleted
 * between pages never make a page repeat or skip the others.
 */

/** The first name's place in the listing order relative to the second's (negative: earlier). */
export function listOrder(a: string, b: string): number {
  const pa = a.split("/");
  const pb = b.split("/");
  if (pa.length !== pb.length) return pa.length - pb.length;
  for (let i = 0; i < pa.length; i++) {
    const x = pa[i] as string;
    const y = pb[i] as string;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export interface ListPageLimits {
  /** Most entries on the page. */
  maxEntries: number;
  /** Most bytes of the page's JSON `entries` (each entry's JSON plus a comma). */
  maxBytes: number;
  /** The previous page's `next`: only names after it belong on this page. */
  after?: string | undefined;
}

export interface ListPageResult<E> {
  entries: E[];
  truncated: boolean;
  /** When truncated: pass as `after` to get the next page. */
  next?: string;
}

const encoder = new TextEncoder();

export class ListPage<E extends { name: string }> {
  readonly #limits: ListPageLimits;
  readonly #entries: E[] = [];
  #bytes = 0;
  #full = false;

  constructor(limits: ListPageLimits) {
    this.#limits = limits;
  }

  /** Whether `name` comes after the cursor (a name at or before it was on an earlier page). */
  wanted(name: string): boolean {
    return this.#limits.after === undefined || listOrder(name, this.#limits.after) > 0;
  }

  /** Add the next entry in order; false once the page is full (the entry is not on it). */
  add(entry: E): boolean {
    if (this.#full) return false;
    const bytes = encoder.encode(JSON.stringify(entry)).byteLength + 1;
    if (this.#entries.length >= this.#limits.maxEntries || this.#bytes + bytes > this.#limits.maxBytes) {
      this.#full = true;
      return false;
    }
    this.#entries.push(entry);
    this.#bytes += bytes;
    return true;
  }

  get full(): boolean {
    return this.#full;
  }

  result(): ListPageResult<E> {
    const last = this.#entries.at(-1);
    return this.#full && last
      ? { entries: this.#entries, truncated: true, next: last.name }
      : { entries: this.#entries, truncated: this.#full };
  }
}

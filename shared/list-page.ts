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
/** What an entry costs a page: its JSON and a comma. */
const costOf = (entry: unknown): number => encoder.encode(JSON.stringify(entry)).byteLength + 1;

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
    const bytes = costOf(entry);
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

/**
 * The same page as ListPage, from entries that arrive in ANY order (api mode's `find` output): it
 * keeps only the smallest entries that fit the caps (a max-heap by listing order, the largest
 * dropped while over), so memory stays one page however long the listing is.
 */
export class ListSelection<E extends { name: string }> {
  readonly #limits: ListPageLimits;
  /** Max-heap by listOrder of the entries kept, with their costs. */
  readonly #heap: Array<{ entry: E; bytes: number }> = [];
  #bytes = 0;
  /** The smallest name dropped so far: nothing at or after it can be on the page. */
  #bound: string | null = null;

  constructor(limits: ListPageLimits) {
    this.#limits = limits;
  }

  offer(entry: E): void {
    if (this.#limits.after !== undefined && listOrder(entry.name, this.#limits.after) <= 0) return;
    if (this.#bound !== null && listOrder(entry.name, this.#bound) >= 0) return;
    const bytes = costOf(entry);
    this.#push({ entry, bytes });
    this.#bytes += bytes;
    while (this.#heap.length > this.#limits.maxEntries || this.#bytes > this.#limits.maxBytes) {
      const top = this.#pop();
      if (!top) break;
      this.#bytes -= top.bytes;
      this.#bound = top.entry.name;
    }
  }

  result(): ListPageResult<E> {
    const entries = this.#heap.map((h) => h.entry).sort((a, b) => listOrder(a.name, b.name));
    const last = entries.at(-1);
    if (this.#bound === null) return { entries, truncated: false };
    return last ? { entries, truncated: true, next: last.name } : { entries, truncated: true };
  }

  #above(i: number, j: number): boolean {
    return (
      listOrder((this.#heap[i] as { entry: E }).entry.name, (this.#heap[j] as { entry: E }).entry.name) > 0
    );
  }

  #swap(i: number, j: number): void {
    const h = this.#heap;
    [h[i], h[j]] = [h[j] as (typeof h)[number], h[i] as (typeof h)[number]];
  }

  #push(item: { entry: E; bytes: number }): void {
    this.#heap.push(item);
    for (let i = this.#heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.#above(i, parent)) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #pop(): { entry: E; bytes: number } | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#above(l, m)) m = l;
      if (r < h.length && this.#above(r, m)) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return top;
  }
}

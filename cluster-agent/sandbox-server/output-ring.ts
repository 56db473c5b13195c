/** What a read at some offset got: `dropped` bytes before `offset` had already left the ring. */
export interface RingRead {
  /** Where `data` starts: `since`, or the ring's oldest byte when `since` fell out of it. */
  offset: number;
  /** `offset + data.length`: where the next read continues. */
  next: number;
  dropped: number;
  data: Buffer;
}

/**
 * The last `capacity` bytes of one growing byte stream, addressed by absolute offset (bytes since
 * the stream began), so a reader that reconnects with the offset it got last continues exactly
 * there. A writer never waits for readers: when a reader falls behind by more than the ring holds,
 * the bytes in between are gone and its next read says how many. Memory grows with the output, up
 * to `capacity`, so a quiet process costs almost nothing.
 */
export class OutputRing {
  readonly capacity: number;
  #buf: Buffer = Buffer.alloc(0);
  /** Index in #buf of the oldest byte held. */
  #head = 0;
  #len = 0;
  #end = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("ring capacity must be ≥ 1");
    this.capacity = capacity;
  }

  /** Offset one past the newest byte (= bytes ever written). */
  get end(): number {
    return this.#end;
  }

  /** Offset of the oldest byte still held. */
  get start(): number {
    return this.#end - this.#len;
  }

  write(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#end += chunk.length;
    if (chunk.length >= this.capacity) {
      // Only its tail survives; everything held before is overwritten.
      this.#grow(this.capacity);
      chunk.copy(this.#buf, 0, chunk.length - this.capacity);
      this.#head = 0;
      this.#len = this.capacity;
      return;
    }
    const need = this.#len + chunk.length;
    if (need > this.#buf.length) this.#grow(Math.min(this.capacity, Math.max(need, this.#buf.length * 2)));
    const size = this.#buf.length;
    if (need > size) {
      const drop = need - size;
      this.#head = (this.#head + drop) % size;
      this.#len -= drop;
    }
    const at = (this.#head + this.#len) % size;
    const first = Math.min(chunk.length, size - at);
    chunk.copy(this.#buf, at, 0, first);
    if (first < chunk.length) chunk.copy(this.#buf, 0, first);
    this.#len += chunk.length;
  }

  /** Up to `max` bytes from `since` (0 ≤ since ≤ end; the caller validates). */
  read(since: number, max: number): RingRead {
    const offset = Math.max(since, this.start);
    const n = Math.max(0, Math.min(this.#end - offset, max));
    const data = Buffer.allocUnsafe(n);
    const size = this.#buf.length;
    if (n > 0) {
      const at = (this.#head + (offset - this.start)) % size;
      const first = Math.min(n, size - at);
      this.#buf.copy(data, 0, at, at + first);
      if (first < n) this.#buf.copy(data, first, 0, n - first);
    }
    return { offset, next: offset + n, dropped: offset - since, data };
  }

  /** Reallocates to `size` bytes with the held bytes laid out from index 0. */
  #grow(size: number): void {
    if (size <= this.#buf.length) return;
    const next = Buffer.alloc(size);
    const old = this.#buf;
    const first = Math.min(this.#len, old.length - this.#head);
    old.copy(next, 0, this.#head, this.#head + first);
    if (first < this.#len) old.copy(next, first, 0, this.#len - first);
    this.#buf = next;
    this.#head = 0;
  }
}

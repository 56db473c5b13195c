/**
 * One relayed body as its receiver sees it (a response at the edge, an upload at the agent):
 * chunk frames push into it as they arrive, the reader's stream pulls from it. Pull-based
 * (highWaterMark 0), so nothing depends on when the runtime starts the stream, and
 * `bufferedBytes` says how far the reader lags behind the sender.
 */
export class BodyQueue {
  private readonly items: Uint8Array[] = [];
  private ended = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;
  bufferedBytes = 0;
  readonly stream: ReadableStream<Uint8Array>;

  /** `onConsumed(bytes)` runs each time the reader has taken a chunk (flow-control credit). */
  constructor(onCancel: () => void, onConsumed: (bytes: number) => void = () => {}) {
    this.stream = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (this.items.length === 0 && !this.ended && this.failure === null) {
            await new Promise<void>((resolve) => {
              this.wake = resolve;
            });
          }
          const next = this.items.shift();
          if (next) {
            this.bufferedBytes -= next.byteLength;
            controller.enqueue(next);
            onConsumed(next.byteLength);
          } else if (this.failure !== null) controller.error(this.failure);
          else controller.close();
        },
        cancel: () => {
          this.ended = true;
          this.items.length = 0;
          this.bufferedBytes = 0;
          onCancel();
        },
      },
      { highWaterMark: 0 },
    );
  }

  push(bytes: Uint8Array): void {
    if (this.ended || this.failure !== null) return;
    this.items.push(bytes);
    this.bufferedBytes += bytes.byteLength;
    this.poke();
  }

  end(): void {
    this.ended = true;
    this.poke();
  }

  fail(error: unknown): void {
    this.failure = error;
    this.poke();
  }

  /** Fail now, dropping what is queued (freed at once, never delivered). */
  cut(error: unknown): void {
    this.items.length = 0;
    this.bufferedBytes = 0;
    this.fail(error);
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

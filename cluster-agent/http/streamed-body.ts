import { createHash } from "node:crypto";
import { AppError, err, type Result } from "../../shared/errors.ts";
import { digestToBase64url } from "../../shared/relay-signing.ts";

export interface StreamedBodyCheck {
  /** Most bytes the body may have. */
  limit: number;
  /** The signed trailer, once the body has passed (null: none came). */
  trailer: Promise<string | null>;
  /** Verifies the trailer against the bytes that passed (RelayVerifier.verifyTrailer for this relay). */
  verify(trailer: string | null, body: { sha256: string; size: number }): Promise<Result<void>>;
  /** Why the body was refused, so the route's answer can say it (it sees only a broken stream). */
  onRefused(error: AppError): void;
}

/**
 * A streamed relay body that is only ever *complete* if it is the body the edge signed: bytes
 * pass through as they come (into the exec server's temp file), hashed on the way; the stream
 * closes only after the trailer verifies, and otherwise errors — which aborts the upload to the
 * pod before its end, so the exec server drops the temp file and never renames it into place.
 */
export function verifiedBody(
  body: ReadableStream<Uint8Array>,
  check: StreamedBodyCheck,
): ReadableStream<Uint8Array> {
  const hash = createHash("sha256");
  let size = 0;
  const refuse = (out: TransformStreamDefaultController<Uint8Array>, error: AppError) => {
    check.onRefused(error);
    out.error(error);
  };
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        size += chunk.byteLength;
        if (size > check.limit)
          return refuse(out, new AppError("payload_too_large", `body exceeds ${check.limit} bytes`));
        hash.update(chunk);
        out.enqueue(chunk);
      },
      async flush(out) {
        const passed = { sha256: digestToBase64url(hash.digest()), size };
        // A check that throws refuses the body too: it must never complete unverified.
        const ok = await check
          .verify(await check.trailer, passed)
          .catch((e: unknown) => err(new AppError("internal", `trailer check failed: ${String(e)}`)));
        if (!ok.ok) refuse(out, ok.error);
      },
    }),
  );
}

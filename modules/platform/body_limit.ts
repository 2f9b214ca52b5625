/**
 * Request body limits, in force before anything reads a body (the CSRF check, zod, a handler).
 * Hono's `bodyLimit` refuses a declared Content-Length above the limit without reading a byte and
 * counts a chunked body as it arrives; the stream it reads is itself capped, so a body longer than
 * its Content-Length claims is cut at the limit too. A refused body is cancelled: nothing more is
 * pulled from the client, so memory does not grow with what it sends.
 */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { DomainError } from "./errors.ts";
import type { AppEnv } from "./app_env.ts";

/** Every form and callback: a form with a long text field is a few kilobytes. */
export const FORM_BODY_LIMIT = 64 * 1024;
/** Where a file is uploaded (imports, statements): above each handler's own stated file limit. */
export const UPLOAD_BODY_LIMIT = 20 * 1024 * 1024;

/** Which requests may carry a body how large. */
export interface BodyLimits {
  /** Bytes any request body may have. */
  forms: number;
  /** Exact paths that take a file upload, and the bytes their bodies may have. */
  uploads: { paths: string[]; maxSize: number };
}

/** A request body over its limit: answered 413 with the limit in the message. */
export class PayloadTooLargeError extends DomainError {
  override status = 413 as const;
  constructor(readonly limit: number) {
    super(
      `Cannot accept request body: over ${limit} bytes`,
      `提交的内容过大（不能超过${describeBytes(limit)}），请减小后重试`,
    );
  }
}

/** "64KB" / "20MB". */
function describeBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${Math.round(bytes / (1 << 20))}MB` : `${Math.round(bytes / 1024)}KB`;
}

/** One middleware for the whole app: the upload limit on the upload paths, the form limit elsewhere. */
export function limitBodies(limits: BodyLimits): MiddlewareHandler<AppEnv> {
  const forms = limitBody(limits.forms);
  const uploads = limitBody(limits.uploads.maxSize);
  const uploadPaths = new Set(limits.uploads.paths);
  return (c, next) => (uploadPaths.has(c.req.path) ? uploads : forms)(c, next);
}

function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  const counted = bodyLimit({
    maxSize,
    onError: (c) => {
      // Refused on its Content-Length: the body was never read; stop the client's stream.
      const body = c.req.raw.body;
      if (body && !body.locked) body.cancel().catch(() => {});
      throw new PayloadTooLargeError(maxSize);
    },
  });
  return async (c, next) => {
    const body = c.req.raw.body;
    if (!body) return await next();
    const limited = capped(body, maxSize);
    c.req.raw = new Request(c.req.raw, { body: limited.stream });
    try {
      return await counted(c, next);
    } finally {
      // A body nobody read (the request failed first, e.g. the database was away) is let go now.
      // Held, the connection would stay open after the answer until the reader was collected:
      // nginx's upstream requests are HTTP/1.0, whose answer ends only when the connection
      // closes, so the person waited ~20 s for the error page.
      limited.release();
    }
  };
}

/**
 * The body as a stream that errors with PayloadTooLargeError on the chunk that takes it past
 * `maxSize`, cancelling the source. Pulls only when its reader asks (no read-ahead).
 */
function capped(
  source: ReadableStream<Uint8Array>,
  maxSize: number,
): { stream: ReadableStream<Uint8Array>; release(): void } {
  const reader = source.getReader();
  let size = 0;
  let finished = false;
  const stop = (reason: string) => {
    finished = true;
    return reader.cancel(reason);
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return controller.close();
      }
      size += value.byteLength;
      if (size > maxSize) {
        stop("request body over its limit").catch(() => {});
        return controller.error(new PayloadTooLargeError(maxSize));
      }
      controller.enqueue(value);
    },
    cancel: (reason) => stop(String(reason ?? "request body cancelled")),
  }, { highWaterMark: 0 });
  return {
    stream,
    release() {
      if (!finished) stop("request answered without reading its body").catch(() => {});
    },
  };
}

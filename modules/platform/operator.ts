/**
 * The running server's operator endpoints, for the command-line tools: PGlite is one process, so
 * while a server holds DATA_DIR, `deno task backup` and `deno task sim keys` ask the server
 * instead of opening the directory. They answer only the operator token the server wrote into
 * its lock file (readable only by the user running the server, who could read DATA_DIR's secrets
 * anyway); anyone else gets a plain 404, as for any unknown path.
 */
import { Hono } from "hono";
import { bearerMatches, DataDirBusyError, type HolderInfo } from "./data_dir.ts";
import { logger } from "./log.ts";

const log = logger("operator");

/** A registered reader with its key, as `deno task sim keys` lists it. */
export interface ReaderKey {
  id: number;
  kind: string;
  status: string;
  merchantName: string;
  name: string;
  key: string;
}

/** What the endpoints serve: a copy of the embedded database, the readers and their keys. */
export interface OperatorOptions {
  token: string;
  dump?: () => Promise<Blob>;
  readers: () => Promise<ReaderKey[]>;
}

/** GET /ops/backup (.tar.gz) and GET /ops/readers (JSON), for the holder of `token`. */
export function operatorRoutes(options: OperatorOptions): Hono {
  const app = new Hono();
  app.use("/ops/*", async (c, next) => {
    if (!bearerMatches(c.req.header("authorization"), options.token)) {
      return c.text("Not found", 404);
    }
    await next();
  });
  app.get("/ops/readers", async (c) => c.json(await options.readers()));
  if (options.dump) {
    const dump = options.dump;
    app.get("/ops/backup", async () => {
      const started = performance.now();
      const blob = await dump();
      log.info("backup taken", { bytes: blob.size, ms: Math.round(performance.now() - started) });
      return new Response(blob.stream(), {
        headers: {
          "content-type": "application/gzip",
          "content-length": String(blob.size),
          "cache-control": "no-store",
        },
      });
    });
  }
  app.all("*", (c) => c.text("Not found", 404));
  return app;
}

/** Why asking the server holding a data directory failed, in one line. */
export class OperatorError extends Error {}

/**
 * Asks the server that holds a data directory (the holder of `busy`) for `path`; refuses when
 * the holder is not a server (another tool) or does not answer.
 */
export async function askHolder(busy: DataDirBusyError, path: string): Promise<Response> {
  const holder: HolderInfo | null = busy.holder;
  if (!holder?.url || !holder.token) {
    throw new OperatorError(`${busy.message} (it is not a server that can be asked)`);
  }
  const res = await fetch(`${holder.url}${path}`, {
    headers: { authorization: `Bearer ${holder.token}` },
  }).catch((e) => {
    throw new OperatorError(
      `Cannot ask the running server at ${holder.url} (pid ${holder.pid}): ${e.message}`,
    );
  });
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new OperatorError(
      `The running server at ${holder.url} answered ${path} with ${res.status}`,
    );
  }
  return res;
}

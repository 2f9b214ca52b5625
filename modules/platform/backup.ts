/**
 * The running server's copy of its embedded database, for `deno task backup`: PGlite is one
 * process, so a backup of a running system must come from the process that holds DATA_DIR. The
 * endpoint answers only the operator token the server wrote into its lock file (readable only by
 * the user running the server); anyone else gets a plain 404, as for any unknown path.
 */
import { Hono } from "hono";
import { bearerMatches } from "./data_dir.ts";
import { logger } from "./log.ts";

const log = logger("backup");

/** GET /ops/backup → the data directory as .tar.gz, for the holder of `token`. */
export function backupRoutes(options: { dump: () => Promise<Blob>; token: string }): Hono {
  const app = new Hono();
  app.get("/ops/backup", async (c) => {
    if (!bearerMatches(c.req.header("authorization"), options.token)) {
      return c.text("Not found", 404);
    }
    const started = performance.now();
    const blob = await options.dump();
    log.info("backup taken", { bytes: blob.size, ms: Math.round(performance.now() - started) });
    return new Response(blob.stream(), {
      headers: {
        "content-type": "application/gzip",
        "content-length": String(blob.size),
        "cache-control": "no-store",
      },
    });
  });
  return app;
}

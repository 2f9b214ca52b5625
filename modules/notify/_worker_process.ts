/**
 * A second server instance's notifier, as a process of its own, for the test that SIGKILLs it
 * (outbox_test.ts): `deno run -A modules/notify/_worker_process.ts` with DATABASE_URL and the
 * WECHAT_* settings in its environment. It prints "ready" once its worker runs.
 */
import { openDatabase } from "../platform/database.ts";
import { testConfig } from "../platform/testing.ts";
import { createMailer } from "../mail/mod.ts";
import { startNotifier } from "./loop.ts";

const url = Deno.env.get("DATABASE_URL");
if (!url) throw new Error("Cannot start the worker process: DATABASE_URL is not set");
const handle = await openDatabase({ databaseUrl: url, poolSize: 4 });
const config = testConfig({ env: { ...testConfig().env, ...Deno.env.toObject() } });
startNotifier({ db: handle.db, config, mailer: createMailer({ db: handle.db, config }) }, {
  pollMs: 100,
});
console.log("ready");

import assert from "node:assert/strict";
import { join } from "node:path";
import { sql } from "kysely";
import { openDatabase } from "../modules/platform/database.ts";
import { migrateToLatest } from "../modules/platform/migrate.ts";
import { DataDirBusyError, lockDataDir, operatorToken } from "../modules/platform/data_dir.ts";
import { operatorRoutes } from "../modules/platform/operator.ts";
import { backup, BackupError, restore } from "./backup.ts";

/** A running "server" on an embedded database in `dir`: it holds DATA_DIR and answers backups. */
async function runningServer(dir: string) {
  const handle = await openDatabase({ databaseUrl: null, dataDir: dir });
  await migrateToLatest(handle.db);
  await sql`create table drill_probe (n int primary key)`.execute(handle.db);
  const token = operatorToken();
  const ops = operatorRoutes({ dump: handle.dump!, token, readers: () => Promise.resolve([]) });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, ops.fetch);
  const url = `http://127.0.0.1:${http.addr.port}`;
  handle.lock!.announce({ url, token });
  return {
    handle,
    url,
    token,
    async close() {
      await http.shutdown();
      await handle.close();
    },
  };
}

Deno.test("a running server's embedded database is backed up through it and restored", async () => {
  const tmp = Deno.makeTempDirSync();
  const live = join(tmp, "live");
  const server = await runningServer(live);
  try {
    await sql`insert into drill_probe values (1), (2)`.execute(server.handle.db);
    const file = join(tmp, "copy.tar.gz");
    const size = await backup(live, file);
    assert.ok(size > 1000);
    assert.equal(Deno.statSync(file).mode! & 0o777, 0o600);
    // Written after the copy: not in it.
    await sql`insert into drill_probe values (3)`.execute(server.handle.db);

    // Into a fresh directory (a new machine): the rows of the moment of the copy, books verified.
    const fresh = join(tmp, "fresh");
    const r = await restore(fresh, file);
    assert.equal(r.ledgerOk, true);
    assert.equal(r.movedAside, null);
    const check = await openDatabase({ databaseUrl: null, dataDir: fresh });
    try {
      const rows = await sql<{ n: number }>`select n from drill_probe order by n`.execute(check.db);
      assert.deepEqual(rows.rows.map((x) => x.n), [1, 2]);
    } finally {
      await check.close();
    }
    // Over an existing database only with --force, which keeps the old one aside.
    await assert.rejects(restore(fresh, file), BackupError);
    const again = await restore(fresh, file, { force: true });
    assert.match(again.movedAside ?? "", /pgdata\.before-restore-/);
    assert.ok(Deno.statSync(again.movedAside!).isDirectory);
    // Never into a directory a server holds.
    await assert.rejects(restore(live, file, { force: true }), DataDirBusyError);
  } finally {
    await server.close();
    Deno.removeSync(tmp, { recursive: true });
  }
});

Deno.test("the operator endpoints answer only the operator token", async () => {
  const tmp = Deno.makeTempDirSync();
  const server = await runningServer(join(tmp, "live"));
  try {
    for (
      const auth of [
        undefined,
        "Bearer",
        `Bearer ${operatorToken()}`,
        server.token,
        `Basic ${server.token}`,
      ]
    ) {
      const res = await fetch(`${server.url}/ops/backup`, {
        headers: auth ? { authorization: auth } : {},
      });
      assert.equal(res.status, 404, String(auth));
      await res.body?.cancel();
    }
    for (const path of ["/ops/readers", "/ops/other", "/ops/"]) {
      const res = await fetch(`${server.url}${path}`, {
        headers: { authorization: `Bearer ${operatorToken()}` },
      });
      assert.equal(res.status, 404, path);
      await res.body?.cancel();
    }
    const ok = await fetch(`${server.url}/ops/backup`, {
      headers: { authorization: `Bearer ${server.token}` },
    });
    assert.equal(ok.status, 200);
    const bytes = new Uint8Array(await ok.arrayBuffer());
    assert.deepEqual([bytes[0], bytes[1]], [0x1f, 0x8b]);
  } finally {
    await server.close();
    Deno.removeSync(tmp, { recursive: true });
  }
});

Deno.test("a stopped system is backed up from its directory, which is left free", async () => {
  const tmp = Deno.makeTempDirSync();
  try {
    const dir = join(tmp, "data");
    const h = await openDatabase({ databaseUrl: null, dataDir: dir });
    await migrateToLatest(h.db);
    await h.close();
    assert.ok(await backup(dir, join(tmp, "b.tar.gz")) > 1000);
    lockDataDir(dir).release();
    await assert.rejects(
      restore(join(tmp, "x"), join(tmp, "missing.tar.gz")),
      BackupError,
    );
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});

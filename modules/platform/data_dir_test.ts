import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  bearerMatches,
  DataDirBusyError,
  isDataDirHeld,
  lockDataDir,
  operatorToken,
  readHolder,
  securePrivateDir,
} from "./data_dir.ts";
import { openDatabase } from "./database.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Every path under `dir` whose mode lets group or others in. */
function openToOthers(dir: string): string[] {
  const found: string[] = [];
  const walk = (p: string) => {
    const st = Deno.lstatSync(p);
    if ((st.mode! & 0o077) !== 0) found.push(`${p} ${(st.mode! & 0o777).toString(8)}`);
    if (st.isDirectory) { for (const e of Deno.readDirSync(p)) walk(join(p, e.name)); }
  };
  walk(dir);
  return found;
}

/** Runs a Deno script file and returns its exit code and output. */
async function runDeno(args: string[], env: Record<string, string>, stdin?: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1" },
    clearEnv: false,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("a data directory is made private: created 0700, open files and folders repaired", () => {
  const parent = Deno.makeTempDirSync();
  try {
    const dir = join(parent, "data");
    securePrivateDir(dir);
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    Deno.mkdirSync(join(dir, "pgdata/base"), { recursive: true });
    Deno.chmodSync(join(dir, "pgdata"), 0o755);
    Deno.chmodSync(join(dir, "pgdata/base"), 0o777);
    Deno.writeTextFileSync(join(dir, "pgdata/base/1234"), "balances");
    Deno.chmodSync(join(dir, "pgdata/base/1234"), 0o666);
    Deno.writeTextFileSync(join(dir, "secrets.json"), "{}", { mode: 0o600 });
    Deno.chmodSync(dir, 0o755);
    assert.equal(openToOthers(dir).length, 4);
    assert.equal(securePrivateDir(dir), 4);
    assert.deepEqual(openToOthers(dir), []);
    assert.equal(Deno.statSync(join(dir, "pgdata/base/1234")).mode! & 0o777, 0o600);
    assert.equal(securePrivateDir(dir), 0);
  } finally {
    Deno.removeSync(parent, { recursive: true });
  }
});

Deno.test("a second holder of a data directory is refused with one line naming the first", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const first = lockDataDir(dir);
    assert.equal(isDataDirHeld(dir), true);
    assert.throws(() => lockDataDir(dir), (err: unknown) => {
      assert.ok(err instanceof DataDirBusyError);
      assert.match(err.message, new RegExp(`pid ${Deno.pid}`));
      assert.ok(!err.message.includes("\n"));
      return true;
    });
    first.announce({ url: "http://127.0.0.1:1", token: "t" });
    assert.equal(readHolder(dir)?.url, "http://127.0.0.1:1");
    assert.equal(Deno.statSync(join(dir, "yxt.lock")).mode! & 0o777, 0o600);
    first.release();
    assert.equal(isDataDirHeld(dir), false);
    lockDataDir(dir).release();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the lock of a SIGKILLed holder is released by the kernel", async () => {
  const dir = Deno.makeTempDirSync();
  const script = join(dir, "hold.ts");
  Deno.writeTextFileSync(
    script,
    `import { lockDataDir } from ${JSON.stringify(new URL("./data_dir.ts", import.meta.url).href)};
     lockDataDir(${JSON.stringify(join(dir, "data"))}); console.log("held");
     setInterval(() => {}, 1000);`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /held/);
    assert.throws(() => lockDataDir(join(dir, "data")), DataDirBusyError);
    assert.equal(readHolder(join(dir, "data"))?.pid, child.pid);
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    // The pid is still written in the file; only the OS lock counts.
    assert.equal(readHolder(join(dir, "data"))?.pid, child.pid);
    lockDataDir(join(dir, "data")).release();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the embedded database is opened private and never beside another holder", async () => {
  const dir = Deno.makeTempDirSync();
  try {
    const h = await openDatabase({ databaseUrl: null, dataDir: dir });
    try {
      // PGlite creates its files 0666; nothing under DATA_DIR may be open to other users.
      assert.deepEqual(openToOthers(dir), []);
      await assert.rejects(openDatabase({ databaseUrl: null, dataDir: dir }), DataDirBusyError);
    } finally {
      await h.close();
    }
    assert.deepEqual(openToOthers(dir), []);
    const again = await openDatabase({ databaseUrl: null, dataDir: dir });
    await again.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("verify-ledger, migrate and create-admin refuse a data directory a server holds", async () => {
  const dir = Deno.makeTempDirSync();
  const lock = lockDataDir(dir);
  try {
    const env = { DATA_DIR: dir, DATABASE_URL: "" };
    for (
      const args of [
        ["modules/finance/verify_cli.ts"],
        ["modules/platform/migrate_cli.ts"],
        ["modules/staff/create_admin_cli.ts", "ops", "运维", "Ops-Pass-2026"],
      ]
    ) {
      const r = await runDeno(["run", "-A", ...args], env);
      assert.notEqual(r.code, 0, args[0]);
      assert.doesNotMatch(r.stdout, /ledger OK|Applied|up to date|Created staff/, args[0]);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${args[0]}: ${r.stderr}`);
      assert.match(lines[0], /holds this data directory/, args[0]);
    }
    // Nothing was opened: no database files appeared beside the lock.
    assert.equal([...Deno.readDirSync(dir)].some((e) => e.name === "pgdata"), false);
  } finally {
    lock.release();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the operator token is compared whole and only as a bearer header", () => {
  const token = operatorToken();
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.equal(bearerMatches(`Bearer ${token}`, token), true);
  assert.equal(bearerMatches(token, token), false);
  assert.equal(bearerMatches(`Bearer ${token.slice(0, 63)}0`, token), token.endsWith("0"));
  assert.equal(bearerMatches(`Bearer ${operatorToken()}`, token), false);
  assert.equal(bearerMatches(undefined, token), false);
  assert.equal(bearerMatches("Bearer ", ""), false);
});

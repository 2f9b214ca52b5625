import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { lockDataDir, operatorToken } from "../modules/platform/data_dir.ts";
import { operatorRoutes } from "../modules/platform/operator.ts";
import { listReaderKeys } from "../modules/merchant/mod.ts";
import { setupWorld } from "./_test_support.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

Deno.test("the simulator connects with the key derived from APP_SECRET and opens no database", async () => {
  const w = await setupWorld();
  // DATA_DIR is held (a running embedded server): the simulator must not need to open it.
  const dataDir = Deno.makeTempDirSync();
  const lock = lockDataDir(dataDir);
  try {
    const sim = async (...extra: string[]) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "terminal/sim/main.ts", "--port", String(w.server.port), ...extra],
        cwd: ROOT,
        env: {
          NO_COLOR: "1",
          DATABASE_URL: "",
          DATA_DIR: dataDir,
          APP_SECRET: w.config.appSecret,
          CARD_PEPPER: w.config.cardPepper,
        },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const input = child.stdin.getWriter();
      await input.write(new TextEncoder().encode("quit\n"));
      await input.close();
      const out = await child.output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    };
    const id = String(w.terminals.canteen_pos.id);
    const ok = await sim("--terminal", id);
    assert.match(ok, /SignOnReply seq=\d+\s+Ok/);
    assert.match(ok, new RegExp(`connected to 127\\.0\\.0\\.1:\\d+ as terminal ${id}`));
    // A wrong key version is not accepted, and the simulator says what to try.
    const wrong = await sim("--terminal", id, "--key-version", "2");
    assert.doesNotMatch(wrong, /SignOnReply seq=\d+\s+Ok/);
    assert.match(wrong, /did not accept this key/);
  } finally {
    lock.release();
    Deno.removeSync(dataDir, { recursive: true });
    await w.close();
  }
});

Deno.test("sim keys asks the running server that holds DATA_DIR, and opens nothing", async () => {
  const w = await setupWorld();
  const dataDir = Deno.makeTempDirSync();
  const lock = lockDataDir(dataDir);
  const token = operatorToken();
  const ops = operatorRoutes({
    token,
    readers: () => listReaderKeys(w.db, w.config.appSecret),
  });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, ops.fetch);
  lock.announce({ url: `http://127.0.0.1:${http.addr.port}`, token });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "terminal/sim/main.ts", "keys"],
      cwd: ROOT,
      env: {
        NO_COLOR: "1",
        DATABASE_URL: "",
        DATA_DIR: dataDir,
        APP_SECRET: w.config.appSecret,
        CARD_PEPPER: w.config.cardPepper,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    for (const t of Object.values(w.terminals)) {
      const hex = Array.from(t.key, (b) => b.toString(16).padStart(2, "0")).join("");
      assert.match(text, new RegExp(`^${t.id} [\\s\\S]*?key ${hex}$`, "m"));
    }
    assert.equal([...Deno.readDirSync(dataDir)].some((e) => e.name === "pgdata"), false);
  } finally {
    await http.shutdown();
    lock.release();
    Deno.removeSync(dataDir, { recursive: true });
    await w.close();
  }
});

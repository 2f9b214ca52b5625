import assert from "node:assert/strict";
import { openDatabase } from "../modules/platform/database.ts";
import { MessageCode, Status } from "./messages.ts";
import { startTerminalServer } from "./mod.ts";
import { setupWorld } from "./_test_support.ts";
import { TerminalClient } from "./sim/client.ts";

const onPostgres = Boolean(Deno.env.get("DATABASE_URL"));
if (!onPostgres) {
  console.log(
    "instances_test: skipped on PGlite (one process owns an embedded database); set DATABASE_URL to run it",
  );
}

Deno.test({
  name:
    "two server instances on one PostgreSQL: a retry on the other instance gets the same reply, one debit (PostgreSQL only)",
  ignore: !onPostgres,
  fn: async () => {
    const w = await setupWorld();
    const other = await openDatabase({ databaseUrl: w.h.url!, poolSize: 4 });
    const second = startTerminalServer({ db: other.db, config: w.config }, {
      port: 0,
      hostname: "127.0.0.1",
    });
    try {
      const card = await w.card({ balance: 5000 });
      const t = w.terminals.canteen_pos;
      const a = await w.connect("canteen_pos", { sequence: 77 });
      const { bytes, sequence } = a.frame({
        code: MessageCode.CardPayment,
        chip: card.chip,
        amount: 900,
        password: "",
      });
      const first = await a.sendFrame(bytes, sequence);
      assert.equal((first.message as { status: number }).status, Status.Ok);
      await a.close();
      // The reader never saw that reply; it reconnects to the other instance and retries.
      const b = await TerminalClient.connect({ port: second.port, terminalId: t.id, key: t.key });
      const retried = await b.sendFrame(bytes, sequence);
      assert.deepEqual(retried.bytes, first.bytes);
      // Both at once, on both instances, for a new sequence number: still one debit.
      const a2 = await w.connect("canteen_pos");
      const next = a2.frame({
        code: MessageCode.CardPayment,
        chip: card.chip,
        amount: 100,
        password: "",
      }, { sequence: 78 });
      const [x, y] = await Promise.all([a2.sendFrame(next.bytes, 78), b.sendFrame(next.bytes, 78)]);
      assert.deepEqual(x.bytes, y.bytes);
      assert.equal(await w.balance(card.cardAccountId), 4000);
      await b.close();
    } finally {
      await second.close();
      await other.close();
      await w.close();
    }
  },
});

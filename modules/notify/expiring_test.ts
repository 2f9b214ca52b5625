/**
 * 补助即将到期: the lots' ends read as a clock — one message per lot that still holds money free
 * when its end comes within three days, with what it holds then; never twice, never for a lot
 * spent or switched off, and a position that moves past lots ending at the same instant.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { makeStudent } from "../testkit/mod.ts";
import { ensureSchool } from "../account/mod.ts";
import { DEMO_SCHOOL } from "../card/mod.ts";
import { grantLots, subsidyFundingAccount } from "../wallet/mod.ts";
import { NOON as FIXED_NOON, type NotifyWorld, notifyWorld } from "./_testing.ts";
import { minuteOf } from "./derive.ts";
import { DEFAULT_SETTINGS, saveSettings } from "./settings.ts";

const DAY = 86_400_000;
/**
 * A China noon not before today (the clock's position starts when the database was made, so the
 * rounds' clock must not be behind the real one): the fixed one, or as many days on as needed.
 */
const NOON = new Date(
  FIXED_NOON.getTime() + Math.max(0, Math.ceil((Date.now() - FIXED_NOON.getTime()) / DAY)) * DAY,
);

async function grant(
  w: NotifyWorld,
  cardAccountId: number,
  amount: number,
  until: Date,
  reference: string,
) {
  const school = await ensureSchool(w.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  await w.db.transaction().execute(async (trx) =>
    grantLots(trx, {
      purse: "subsidy",
      fundingAccountId: await subsidyFundingAccount(trx, school),
      batchId: null,
      validFrom: new Date(Date.now() - 3600_000),
      validUntil: until,
      categories: ["canteen"],
    }, [{ cardAccountId, amount, reference }])
  );
}

async function expiring(w: NotifyWorld, accountId: number) {
  const rows = await w.db.selectFrom("notify_messages").select(["data", "source", "state"])
    .where("account_id", "=", accountId).where("kind", "=", "subsidy_expiring").orderBy("id")
    .execute();
  return rows.map((r) => ({ ...r, data: r.data as Record<string, string | number> }));
}

Deno.test("a 补助 ending within three days is one 补助即将到期 with what it still holds, once", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 0 });
  await w.bindWechat(s.accountId);
  await grant(w, s.cardAccountId, 20_00, new Date(NOON.getTime() + 2 * DAY), "exp-soon");
  await grant(w, s.cardAccountId, 30_00, new Date(NOON.getTime() + 10 * DAY), "exp-later");
  // A canteen payment takes the lot that ends first: ¥15.00 of it is left.
  await w.pay(s.cardAccountId, 5_00);
  await w.settle(NOON);
  const first = await expiring(w, s.accountId);
  assert.equal(first.length, 1);
  assert.deepEqual(
    [first[0].data.purse, first[0].data.amount, first[0].data.until, first[0].state],
    ["补助", "¥15.00", minuteOf(new Date(NOON.getTime() + 2 * DAY)), "sent"],
  );
  const sent = w.standin.messages.filter((m) => m.template_id === "TPL_SUBSIDY_EXPIRING");
  assert.equal(sent.length, 1);
  assert.deepEqual(Object.values(sent[0].data).map((v) => v.value).slice(0, 3), [
    "补助",
    "¥15.00",
    minuteOf(new Date(NOON.getTime() + 2 * DAY)),
  ]);
  // Later rounds the same day say nothing more.
  await w.settle(NOON);
  await w.settle(new Date(NOON.getTime() + 3600_000));
  assert.equal((await expiring(w, s.accountId)).length, 1);
  // Eight days on, the second lot's end is near: its own message, with all of it.
  await w.settle(new Date(NOON.getTime() + 8 * DAY));
  const second = await expiring(w, s.accountId);
  assert.deepEqual(second.map((m) => m.data.amount), ["¥15.00", "¥30.00"]);
});

Deno.test("no 补助即将到期 for a lot spent or switched off; lots ending at one instant are each read once", async () => {
  await using w = await notifyWorld();
  const end = new Date(NOON.getTime() + DAY);
  const spent = await makeStudent(w, { balance: 0 });
  const muted = await makeStudent(w, { balance: 0 });
  const others = await Promise.all([1, 2, 3].map(() => makeStudent(w, { balance: 0 })));
  for (const x of [spent, muted, ...others]) await w.bindWechat(x.accountId);
  await saveSettings(w.db, muted.accountId, { ...DEFAULT_SETTINGS, muted: ["subsidy_expiring"] });
  await grant(w, spent.cardAccountId, 3_00, end, "exp-spent");
  await w.pay(spent.cardAccountId, 3_00);
  await grant(w, muted.cardAccountId, 8_00, end, "exp-muted");
  for (const [i, x] of others.entries()) {
    await grant(w, x.cardAccountId, 1_00 * (i + 1), end, `exp-same-${i}`);
  }
  // Ends kept to the microsecond (a JS Date has milliseconds): the clock must still move past.
  await sql`update purse_lots set valid_until = valid_until + interval '123 microseconds'
    where reference like 'exp-same-%'`.execute(w.db);
  await w.settle(NOON);
  assert.deepEqual(await expiring(w, spent.accountId), []);
  assert.deepEqual(await expiring(w, muted.accountId), []);
  for (const [i, x] of others.entries()) {
    assert.deepEqual((await expiring(w, x.accountId)).map((m) => m.data.fen), [1_00 * (i + 1)]);
  }
  // The rounds that follow find nothing (settle throws if they keep finding work).
  await w.settle(new Date(NOON.getTime() + 2 * 3600_000));
});

Deno.test("a lot granted after the clock passed its end is announced from its grant", async () => {
  await using w = await notifyWorld();
  const a = await makeStudent(w, { balance: 0 });
  const b = await makeStudent(w, { balance: 0 });
  for (const x of [a, b]) await w.bindWechat(x.accountId);
  // A's lot ends in 2.9 days: announced, and the clock's position is its end.
  await grant(w, a.cardAccountId, 4_00, new Date(NOON.getTime() + 2.9 * DAY), "exp-clock-a");
  await w.settle(NOON);
  assert.equal((await expiring(w, a.accountId)).length, 1);
  // B's lot, granted now, ends tomorrow: behind the position, found through its grant.
  await grant(w, b.cardAccountId, 6_00, new Date(NOON.getTime() + DAY), "exp-clock-b");
  await w.settle(new Date(NOON.getTime() + 3600_000));
  assert.deepEqual((await expiring(w, b.accountId)).map((m) => m.data.amount), ["¥6.00"]);
  // Not twice, and A not again.
  await w.settle(new Date(NOON.getTime() + DAY / 2));
  assert.equal((await expiring(w, b.accountId)).length, 1);
  assert.equal((await expiring(w, a.accountId)).length, 1);
});

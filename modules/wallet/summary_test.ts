import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { openDatabase } from "../platform/database.ts";
import { csrfFor, TestClient } from "../platform/testing.ts";
import { findBoundCard } from "../card/mod.ts";
import { destroySessionsOf } from "../security/mod.ts";
import { onPostgres, setup } from "./_test_support.ts";
import { signInStudent } from "../testkit/mod.ts";
import {
  getBalance,
  holdFunds,
  issuePaymentCode,
  payFromCard,
  PaymentCodeFrozenError,
  updatePaySettings,
} from "./mod.ts";
import { walletSummary } from "./summary.ts";

Deno.test("余额 reads card, balance and holds as findBoundCard and getBalance do, in every money state", async () => {
  const t = await setup();
  try {
    const s = await t.student(10_000);
    const states = [
      { balance: 10_000, held: 0, overdraft: 0 },
      { balance: 10_000, held: 2_500, overdraft: 0 },
      { balance: 0, held: 0, overdraft: 1_234 },
      { balance: 700, held: 0, overdraft: 300 },
    ];
    for (const st of states) {
      await t.db.updateTable("ledger_accounts").set(st).where(
        "card_account_id",
        "=",
        s.cardAccountId,
      )
        .execute();
      const summary = await walletSummary(t.db, s.accountId);
      assert.deepEqual(
        summary!.balance,
        await getBalance(t.db, s.cardAccountId),
        JSON.stringify(st),
      );
      assert.deepEqual(summary!.card, await findBoundCard(t.db, s.accountId));
    }
    // A card that never had money has no ledger row: zero, like getBalance.
    const empty = await t.student(0);
    const none = await walletSummary(t.db, empty.accountId);
    assert.deepEqual(none!.balance, { balance: 0, held: 0, available: 0 });
    assert.deepEqual(none!.balance, await getBalance(t.db, empty.cardAccountId));
    assert.equal(none!.activeHolds, 0);
    // A lost card is still the bound card (its status shows), an unknown account has none.
    await t.db.updateTable("card_accounts").set({ status: "loss_reported" })
      .where("id", "=", s.cardAccountId).execute();
    const lost = await walletSummary(t.db, s.accountId);
    assert.equal(lost!.card.status, "loss_reported");
    assert.deepEqual(lost!.card, await findBoundCard(t.db, s.accountId));
    assert.equal(await walletSummary(t.db, 999_999_999), null);
    assert.equal(await walletSummary(t.db, -1), null);
  } finally {
    await t.h.close();
  }
});

Deno.test("余额 shows the committed balance on the very next load, and the open shower holds", async () => {
  const t = await setup();
  try {
    const s = await t.student(10_000);
    assert.match(await s.client.page("/wallet"), /100\.00/);
    await payFromCard(t.db, {
      cardAccountId: s.cardAccountId,
      merchantId: t.merchant.id,
      amount: 1_234,
      reference: "summary-pay-1",
    });
    const after = await s.client.page("/wallet");
    assert.match(after, /87\.66/);
    assert.doesNotMatch(after, /笔热水预授权/);
    await holdFunds(t.db, {
      cardAccountId: s.cardAccountId,
      amount: 500,
      merchantId: t.shower.id,
      reference: "summary-hold-1",
      expiresAt: new Date(Date.now() + 3_600_000),
    });
    const held = await s.client.page("/wallet");
    assert.match(held, /有 1 笔热水预授权未结束/);
    assert.match(held, /82\.66/); // available
    // Unbound: the page says to bind a card.
    await t.db.updateTable("card_accounts").set({ account_id: null })
      .where("id", "=", s.cardAccountId).execute();
    assert.match(await s.client.page("/wallet"), /尚未绑定一卡通账号/);
  } finally {
    await t.h.close();
  }
});

Deno.test("付款码 refresh issues one code and retires the old; frozen codes issue nothing", async () => {
  const t = await setup();
  try {
    const s = await t.student(10_000);
    const hx = { "hx-request": "true" };
    const codes = async () =>
      await t.db.selectFrom("payment_codes").select(["code", "superseded_at"])
        .where("card_account_id", "=", s.cardAccountId).orderBy("created_at").execute();
    const first = await s.client.post("/pay/code/refresh", {}, { headers: hx });
    assert.equal(first.status, 200);
    const second = await s.client.post("/pay/code/refresh", {}, { headers: hx });
    assert.equal(second.status, 200);
    const html = await second.text();
    const rows = await codes();
    assert.equal(rows.length, 2);
    assert.notEqual(rows[0].superseded_at, null);
    assert.equal(rows[1].superseded_at, null);
    assert.ok(html.includes(rows[1].code.slice(0, 4)), "the page shows the live code");

    // Frozen in 付款码设置: the refresh sends the page to /pay/code, nothing issued or retired.
    await updatePaySettings(t.db, s.cardAccountId, {
      payLimit: 20_000,
      dailyLimit: 50_000,
      codeFrozen: true,
    });
    const before = await codes();
    const frozen = await s.client.post("/pay/code/refresh", {}, { headers: hx });
    assert.equal(frozen.status, 200);
    assert.equal(frozen.headers.get("hx-redirect"), "/pay/code");
    assert.deepEqual(await codes(), before);

    // Issuing itself refuses while frozen, atomically: the live code is not retired either.
    await t.db.updateTable("ledger_accounts").set({ code_frozen: false })
      .where("card_account_id", "=", s.cardAccountId).execute();
    const live = await issuePaymentCode(t.db, s.cardAccountId);
    await t.db.updateTable("ledger_accounts").set({ code_frozen: true })
      .where("card_account_id", "=", s.cardAccountId).execute();
    const frozenBefore = await codes();
    await assert.rejects(issuePaymentCode(t.db, s.cardAccountId), PaymentCodeFrozenError);
    assert.deepEqual(await codes(), frozenBefore);
    assert.equal(frozenBefore.find((r) => r.code === live.code)!.superseded_at, null);

    // Frozen with the loss report (card side): the same.
    await updatePaySettings(t.db, s.cardAccountId, {
      payLimit: 20_000,
      dailyLimit: 50_000,
      codeFrozen: false,
    });
    await t.db.updateTable("card_accounts").set({ payment_code_frozen: true })
      .where("id", "=", s.cardAccountId).execute();
    const byLoss = await s.client.post("/pay/code/refresh", {}, { headers: hx });
    assert.equal(byLoss.headers.get("hx-redirect"), "/pay/code");
    assert.equal((await codes()).length, frozenBefore.length);
  } finally {
    await t.h.close();
  }
});

Deno.test("sign-out and a password change end a session at once on every server instance", async () => {
  const t = await setup();
  // A second server on the same database: its own pool on PostgreSQL, the same PGlite otherwise.
  const other = onPostgres ? await openDatabase({ databaseUrl: t.h.url!, poolSize: 2 }) : null;
  try {
    const appB = createApp({ db: other?.db ?? t.db, config: t.config, onShutdown: () => {} });
    const s = await t.student(10_000);
    const onB = new TestClient(appB, t.config);
    for (const [k, v] of s.client.cookies) onB.cookies.set(k, v);
    assert.match(await onB.page("/wallet"), /100\.00/);
    const refresh = () =>
      appB.request("http://localhost:8000/pay/code/refresh", {
        method: "POST",
        headers: {
          cookie: [...onB.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
          "hx-request": "true",
        },
      });
    const csrf = await csrfFor(t.config, onB.cookies);
    const live = await appB.request("http://localhost:8000/pay/code/refresh", {
      method: "POST",
      headers: {
        cookie: [...onB.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
        "hx-request": "true",
        "x-csrf-token": csrf,
      },
    });
    assert.equal(live.status, 200);
    await live.body?.cancel();

    const out = await s.client.post("/logout");
    assert.equal(out.status, 303);
    const gone = await onB.get("/wallet");
    assert.equal(gone.status, 303);
    assert.match(gone.headers.get("location") ?? "", /^\/login\?next=%2Fwallet/);
    const codesBefore = await t.db.selectFrom("payment_codes").select("code")
      .where("card_account_id", "=", s.cardAccountId).execute();
    const refused = await refresh();
    assert.ok(refused.status === 204 || refused.status === 403, `status ${refused.status}`);
    await refused.body?.cancel();
    assert.equal(
      (await t.db.selectFrom("payment_codes").select("code")
        .where("card_account_id", "=", s.cardAccountId).execute()).length,
      codesBefore.length,
    );

    // Two sessions of one account; ending the others (a password change or reset) ends B's.
    const phone = new TestClient(t.app, t.config);
    await signInStudent(t.deps, phone, s.accountId);
    const laptop = new TestClient(appB, t.config);
    await signInStudent(t.deps, laptop, s.accountId);
    assert.match(await laptop.page("/wallet"), /100\.00/);
    await destroySessionsOf(t.db, "student", s.accountId, null);
    assert.equal((await laptop.get("/wallet")).status, 303);
    assert.equal((await phone.get("/wallet")).status, 303);
  } finally {
    await other?.close();
    await t.h.close();
  }
});

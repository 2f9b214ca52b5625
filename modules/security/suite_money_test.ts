/**
 * The security suite, part two (issue 7): what touches a card and its money. One student cannot
 * see another's transactions, payment codes or top-up orders; a payment code pays once; reader
 * frames with a forged MAC, a stale timestamp or a replayed sequence number move nothing; card
 * password and email code guessing hit their lockouts. Readers are driven over real TCP against
 * the protocol server, as a reader vendor would.
 */
import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import {
  bindCardForTest,
  createCardAccountForTest,
  DEMO_SCHOOL,
  findBoundCard,
} from "../card/mod.ts";
import { createMerchant, registerTerminal } from "../merchant/mod.ts";
import { creditTopUp, getBalance, verifyLedger } from "../wallet/mod.ts";
import { listOutbox } from "../mail/mod.ts";
import {
  encodeFrame,
  MessageCode,
  startTerminalServer,
  Status,
  TerminalClient,
} from "../../terminal/mod.ts";

const PASSWORD = "Student123";
let serial = 0;

async function setup() {
  await loadAssets();
  const h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  return { h, db: h.db, config, app };
}
type Setup = Awaited<ReturnType<typeof setup>>;

/** A signed-in student whose card is bound and holds `balance` fen. */
async function student(s: Setup, balance = 10_000) {
  const n = ++serial;
  const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const phone = `135${String(n).padStart(8, "0")}`;
  const accountId = await registerAccount(s.db, { phone, password: PASSWORD, schoolId: school.id });
  const idNumber = withCheck(`53010220050315${String(100 + n).slice(-3)}`);
  const card = await createCardAccountForTest(s.db, { config: s.config }, {
    schoolId: school.id,
    studentNumber: `S${String(n).padStart(8, "0")}`,
    idNumber,
    chipNumber: `8${String(n).padStart(9, "0")}`,
  });
  await bindCardForTest(s.db, card.cardAccountId, accountId);
  const topup = await creditTopUp(s.db, {
    cardAccountId: card.cardAccountId,
    amount: balance,
    method: "suite",
    reference: `suite-${n}-${crypto.randomUUID()}`,
  });
  const c = new TestClient(s.app, s.config, `10.9.${n % 250}.1`);
  const res = await c.post("/login", { phone, password: PASSWORD });
  assert.equal(res.status, 303);
  return { c, phone, accountId, card, idNumber, transferId: topup.transferId };
}

function withCheck(body17: string): string {
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = body17.split("").reduce((a, d, i) => a + Number(d) * weights[i], 0);
  return body17 + "10X98765432"[sum % 11];
}

/** The 18 digits of the payment code on the student's 付款码 page. */
async function paymentCode(c: TestClient): Promise<string> {
  const page = await c.page("/pay/code");
  const digits = /paycode__digits">([\d\s]+)</.exec(page)?.[1]?.replace(/\s+/g, "");
  assert.ok(digits && /^\d{18}$/.test(digits), "no payment code digits on /pay/code");
  return digits;
}

Deno.test("a student cannot open another student's transaction, payment code or top-up order", async () => {
  const s = await setup();
  try {
    const a = await student(s);
    const b = await student(s);
    // B's own pages work: the refusals below are about ownership, not broken routes.
    assert.equal((await b.c.get(`/wallet/transactions/${b.transferId}`)).status, 200);
    const own = await a.c.get(`/wallet/transactions/${a.transferId}`);
    assert.equal(own.status, 200);
    const foreign = await a.c.get(`/wallet/transactions/${b.transferId}`);
    assert.equal(foreign.status, 404, "A opened B's transaction");
    assert.doesNotMatch(await foreign.text(), new RegExp(b.card.chipNumber ?? "never"));

    const bCode = await paymentCode(b.c);
    const status = await a.c.get(`/pay/code/status?code=${bCode}`);
    assert.equal(status.status, 404, "A watched B's payment code");
    await status.body?.cancel();

    const order = await b.c.post("/wallet/recharge", {
      amount: "10",
      quick: "",
      method: "sandbox",
    });
    const to = order.headers.get("location") ?? "";
    const orderNo = (/\/pay\/sandbox\/([^/?]+)/.exec(to) ?? /\/orders\/([^/]+)/.exec(to))?.[1];
    assert.ok(orderNo, `no top-up order for B: ${order.status} ${to}`);
    for (const path of [`/wallet/recharge/orders/${orderNo}`, `/pay/sandbox/${orderNo}`]) {
      const r = await a.c.get(path);
      assert.equal(r.status, 404, `A opened B's ${path}`);
      await r.body?.cancel();
    }
    const confirm = await a.c.post(`/pay/sandbox/${orderNo}/confirm`, {});
    assert.equal(confirm.status, 404, "A confirmed B's sandbox payment");
    assert.equal((await getBalance(s.db, b.card.cardAccountId)).balance, 10_000);
  } finally {
    await s.h.close();
  }
});

Deno.test("reader frames: a payment code pays once, and forged, stale or replayed frames move nothing", async () => {
  const s = await setup();
  const server = startTerminalServer({ db: s.db, config: s.config }, {
    port: 0,
    hostname: "127.0.0.1",
  });
  const clients: TerminalClient[] = [];
  try {
    const a = await student(s, 5_000);
    const m = await createMerchant(s.db, {
      code: "SUITE-POS",
      name: "安全食堂",
      category: "canteen",
    });
    const qr = await registerTerminal(s.db, s.config.appSecret, {
      merchantId: m.id,
      kind: "qr_scanner",
      name: "扫码1",
    });
    const pos = await registerTerminal(s.db, s.config.appSecret, {
      merchantId: m.id,
      kind: "canteen_pos",
      name: "POS1",
    });
    const connect = async (t: typeof qr) => {
      const c = await TerminalClient.connect({
        port: server.port,
        terminalId: t.terminal.id,
        key: t.keyHex,
      });
      clients.push(c);
      const on = await c.request({ code: MessageCode.SignOn, firmware: "suite" });
      assert.equal((on.message as { status: number }).status, Status.Ok);
      return c;
    };
    const scanner = await connect(qr);
    const code = await paymentCode(a.c);

    // The code pays once; the very same frame again gets the same bytes back and pays nothing.
    const first = scanner.frame({ code: MessageCode.QrPayment, paymentCode: code, amount: 300 });
    const paid = await scanner.sendFrame(first.bytes, first.sequence);
    assert.equal((paid.message as { status: number }).status, Status.Ok);
    const again = await scanner.sendFrame(first.bytes, first.sequence);
    assert.deepEqual(again.bytes, paid.bytes, "a replayed frame must get the recorded reply");
    const reuse = await scanner.request({
      code: MessageCode.QrPayment,
      paymentCode: code,
      amount: 300,
    });
    assert.equal((reuse.message as { status: number }).status, Status.CodeUsed);
    assert.equal((await getBalance(s.db, a.card.cardAccountId)).balance, 4_700);

    // Same sequence number, different body: refused, nothing recorded.
    const other = encodeFrame(scanner.key, {
      terminalId: qr.terminal.id,
      sequence: first.sequence,
      timestamp: Math.floor(Date.now() / 1000),
    }, { code: MessageCode.QrPayment, paymentCode: code, amount: 999 });
    const reused = await scanner.sendFrame(other, first.sequence);
    assert.equal((reused.message as { status: number }).status, Status.SequenceReused);

    const till = await connect(pos);
    const chip = a.card.chipNumber!;
    // A frame signed with another terminal's key.
    const forged = encodeFrame(scanner.key, {
      terminalId: pos.terminal.id,
      sequence: 50,
      timestamp: Math.floor(Date.now() / 1000),
    }, { code: MessageCode.CardPayment, chip, amount: 100, password: "" });
    const badMac = await till.sendFrame(forged, 50);
    assert.equal((badMac.message as { status: number }).status, Status.BadMac);
    assert.equal(badMac.authenticated, false);

    // A frame from an hour ago (a captured frame replayed later).
    const till2 = await connect(pos);
    const stale = encodeFrame(till2.key, {
      terminalId: pos.terminal.id,
      sequence: 60,
      timestamp: Math.floor(Date.now() / 1000) - 3600,
    }, { code: MessageCode.CardPayment, chip, amount: 100, password: "" });
    const staleReply = await till2.sendFrame(stale, 60);
    assert.equal((staleReply.message as { status: number }).status, Status.StaleTimestamp);

    assert.equal(
      (await getBalance(s.db, a.card.cardAccountId)).balance,
      4_700,
      "a refused frame moved money",
    );
    assert.ok((await verifyLedger(s.db)).ok);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.close();
    await s.h.close();
  }
});

Deno.test("guessing a card password on the web hits the lockout, and the right one waits it out", async () => {
  const s = await setup();
  try {
    const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
    const accountId = await registerAccount(s.db, {
      phone: "13599990001",
      password: PASSWORD,
      schoolId: school.id,
    });
    void accountId;
    const idNumber = withCheck("53010220050315999");
    await createCardAccountForTest(s.db, { config: s.config }, {
      schoolId: school.id,
      studentNumber: "S99990001",
      idNumber,
      chipNumber: "8999990001",
    });
    const c = new TestClient(s.app, s.config, "10.9.251.1");
    assert.equal(
      (await c.post("/login", { phone: "13599990001", password: PASSWORD })).status,
      303,
    );
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await c.post("/security/bind", {
        student_number: "S99990001",
        password: `00000${i}`,
      });
      statuses.push(res.status);
      const text = await res.text();
      if (/锁定|次数过多|稍后再试/.test(text)) break;
    }
    assert.ok(
      statuses.length <= 6,
      `no lockout after ${statuses.length} wrong card passwords: ${statuses}`,
    );
    const right = await c.post("/security/bind", {
      student_number: "S99990001",
      password: idNumber.slice(-6),
    });
    assert.notEqual(right.status, 200, "the right card password bound the card during the lockout");
    assert.match(await right.text(), /锁定|次数过多|稍后再试/);
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing an emailed code hits the lockout, and the right code no longer works", async () => {
  const s = await setup();
  try {
    const a = await student(s);
    const email = `suite${serial}@example.com`;
    const sent = await a.c.post("/me/email/code", { email });
    assert.equal(sent.status, 200, await sent.text());
    const mail = (await listOutbox(s.db, { to: email }))[0];
    assert.ok(mail, "no code in the development outbox");
    const right = /\b(\d{6})\b/.exec(mail.bodyText)?.[1];
    assert.ok(right, "no 6-digit code in the mail");
    let locked = false;
    for (let i = 0; i < 12 && !locked; i++) {
      const guess = String((Number(right) + 1 + i) % 1_000_000).padStart(6, "0");
      const res = await a.c.post("/me/email", { email, code: guess });
      locked = res.status === 429 || /次数过多|失效|重新获取/.test(await res.text());
    }
    assert.ok(locked, "twelve wrong codes and no lockout");
    const late = await a.c.post("/me/email", { email, code: right });
    assert.notEqual(late.status, 303, "the right code still bound the email after the lockout");
    await late.body?.cancel();
  } finally {
    await s.h.close();
  }
});

const LOCKED = /锁定|次数过多|稍后再试/;

Deno.test("guessing the card password on one web form locks it on the others: the right one waits", async () => {
  const s = await setup();
  try {
    const a = await student(s);
    const right = a.idNumber.slice(-6);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await a.c.post("/security/password", {
        old_password: String(100_000 + i),
        new_password: "135790",
      });
      statuses.push(res.status);
      if (LOCKED.test(await res.text())) break;
    }
    assert.ok(statuses.length <= 6, `no lockout after ${statuses.length} wrong tries: ${statuses}`);
    const loss = await a.c.post("/security/loss", {
      chip_number: a.card.chipNumber!,
      id_number: a.idNumber,
      password: right,
    });
    assert.notEqual(loss.status, 303, "the right card password reported a loss during the lockout");
    assert.match(await loss.text(), LOCKED);
    const change = await a.c.post("/security/password", {
      old_password: right,
      new_password: "135790",
    });
    assert.notEqual(change.status, 303, "the right card password changed it during the lockout");
    assert.match(await change.text(), LOCKED);
    const card = await findBoundCard(s.db, a.accountId);
    assert.equal(card?.status, "normal");
    assert.equal(card?.passwordIsDefault, true);
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing the emailed code of a forgotten password hits the lockout, and the right code no longer resets it", async () => {
  const s = await setup();
  try {
    const a = await student(s);
    const email = `forgot${serial}@example.com`;
    await a.c.post("/me/email/code", { email });
    const bindCode = /\b(\d{6})\b/.exec((await listOutbox(s.db, { to: email }))[0].bodyText)?.[1];
    assert.equal((await a.c.post("/me/email", { email, code: bindCode! })).status, 303);

    const anon = new TestClient(s.app, s.config, "10.9.252.1");
    const sent = await anon.post("/password/forgot/code", { phone: a.phone });
    assert.equal(sent.status, 200);
    await sent.body?.cancel();
    const mail = (await listOutbox(s.db, { to: email })).find((m) => /找回/.test(m.subject));
    const right = /\b(\d{6})\b/.exec(mail?.bodyText ?? "")?.[1];
    assert.ok(right, "no password-reset code in the outbox");
    let locked = false;
    for (let i = 0; i < 12 && !locked; i++) {
      const guess = String((Number(right) + 1 + i) % 1_000_000).padStart(6, "0");
      const res = await anon.post("/password/forgot", {
        phone: a.phone,
        code: guess,
        new_password: "Reset1234",
      });
      assert.notEqual(res.status, 303, `the wrong code ${guess} reset the password`);
      locked = res.status === 429 || /次数过多|失效|重新获取/.test(await res.text());
    }
    assert.ok(locked, "twelve wrong codes and no lockout");
    const late = await anon.post("/password/forgot", {
      phone: a.phone,
      code: right,
      new_password: "Reset1234",
    });
    assert.notEqual(late.status, 303, "the right code still reset the password after the lockout");
    await late.body?.cancel();
    const other = new TestClient(s.app, s.config, "10.9.252.2");
    const old = await other.post("/login", { phone: a.phone, password: PASSWORD });
    assert.equal(old.status, 303, "the old password no longer signs in");
  } finally {
    await s.h.close();
  }
});

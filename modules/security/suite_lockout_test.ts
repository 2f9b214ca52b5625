/**
 * The security suite, lockouts (issue 11): guessing a secret stays capped, but a stranger who
 * knows only a phone number, a 学号 or a staff username cannot lock its owner out — not of
 * signing in, of binding, nor of paying at a reader with the card password. And the staff
 * console: a password change ends the member's other sessions, old-password guesses are
 * throttled, and a seeded password is changed before anything else.
 */
import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import {
  CODE_MAX_ATTEMPTS,
  ensureSchool,
  registerAccount,
  RESET_CODE_SENDS,
} from "../account/mod.ts";
import { createCardAccountForTest, DEMO_SCHOOL, findBoundCard } from "../card/mod.ts";
import { createMerchant, registerTerminal } from "../merchant/mod.ts";
import { creditTopUp, getBalance } from "../wallet/mod.ts";
import { listOutbox } from "../mail/mod.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { seedDemoData } from "../demo/mod.ts";
import { signInStaffSettingPassword } from "../testkit/mod.ts";
import { MessageCode, startTerminalServer, Status, TerminalClient } from "../../terminal/mod.ts";
import { CARD_PASSWORD_RULES, SIGN_IN_RULE } from "./mod.ts";

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

function withCheck(body17: string): string {
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = body17.split("").reduce((a, d, i) => a + Number(d) * weights[i], 0);
  return body17 + "10X98765432"[sum % 11];
}

/** A registered login account (no card), signed in from `ip` unless told otherwise. */
async function account(s: Setup, ip: string, options: { signIn?: boolean } = {}) {
  const n = ++serial;
  const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const phone = `137${String(n).padStart(8, "0")}`;
  const accountId = await registerAccount(s.db, { phone, password: PASSWORD, schoolId: school.id });
  const c = new TestClient(s.app, s.config, ip);
  if (options.signIn !== false) {
    const res = await c.post("/login", { phone, password: PASSWORD });
    assert.equal(res.status, 303, `${phone} could not sign in`);
  }
  return { c, phone, accountId };
}

/** An unbound card account with a chip and ¥100.00 on it. */
async function card(s: Setup) {
  const n = ++serial;
  const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const idNumber = withCheck(`53010220040612${String(n % 1000).padStart(3, "0")}`);
  const made = await createCardAccountForTest(s.db, { config: s.config }, {
    schoolId: school.id,
    studentNumber: `L${String(n).padStart(8, "0")}`,
    idNumber,
    chipNumber: `9${String(n).padStart(9, "0")}`,
  });
  await creditTopUp(s.db, {
    cardAccountId: made.cardAccountId,
    amount: 10_000,
    method: "suite",
    reference: `lockout-${n}`,
  });
  return {
    cardAccountId: made.cardAccountId,
    studentNumber: `L${String(n).padStart(8, "0")}`,
    chip: made.chipNumber!,
    idNumber,
    password: made.defaultPassword,
  };
}

async function bind(c: TestClient, fields: Record<string, string>) {
  const res = await c.post("/security/bind", fields);
  return { status: res.status, text: await res.text() };
}

/** A canteen reader signed on over TCP, paying `amount` fen from a chip with a card password. */
async function reader(s: Setup) {
  const server = startTerminalServer({ db: s.db, config: s.config }, {
    port: 0,
    hostname: "127.0.0.1",
  });
  const m = await createMerchant(s.db, { code: "LOCK-POS", name: "锁定食堂", category: "canteen" });
  const t = await registerTerminal(s.db, s.config.appSecret, {
    merchantId: m.id,
    kind: "canteen_pos",
    name: "POS1",
  });
  const client = await TerminalClient.connect({
    port: server.port,
    terminalId: t.terminal.id,
    key: t.keyHex,
  });
  const on = await client.request({ code: MessageCode.SignOn, firmware: "suite" });
  assert.equal((on.message as { status: number }).status, Status.Ok);
  return {
    async pay(chip: string, amount: number, password: string): Promise<number> {
      return (await this.reply(chip, amount, password)).status;
    },
    async reply(chip: string, amount: number, password: string) {
      const r = await client.request({ code: MessageCode.CardPayment, chip, amount, password });
      return r.message as { status: number; triesLeft: number };
    },
    async close() {
      await client.close();
      await server.close();
    },
  };
}

// ---- Cards: binding by strangers ----

Deno.test("a stranger's 5 to 50 wrong binds with a 学号 stop neither its owner's bind nor their reader payment with the card password", async () => {
  const s = await setup();
  const pos = await reader(s);
  try {
    // Five wrong binds (the old lock) by one new account.
    const few = await card(s);
    const stranger = await account(s, "10.50.0.1");
    for (let i = 0; i < 5; i++) {
      await bind(stranger.c, { student_number: few.studentNumber, password: `00000${i}` });
    }
    assert.equal(await pos.pay(few.chip, 3000, few.password), Status.Ok);
    const owner = await account(s, "10.50.0.2");
    const bound = await bind(owner.c, {
      student_number: few.studentNumber,
      password: few.password,
    });
    assert.equal(bound.status, 200, bound.text);
    assert.equal((await findBoundCard(s.db, owner.accountId))?.cardAccountId, few.cardAccountId);

    // Fifty wrong binds from ten accounts on ten addresses.
    const many = await card(s);
    for (let a = 0; a < 10; a++) {
      const st = await account(s, `10.50.1.${a + 1}`);
      for (let i = 0; i < 5; i++) {
        await bind(st.c, { student_number: many.studentNumber, password: `1${a}000${i}` });
      }
    }
    assert.equal(await pos.pay(many.chip, 3000, many.password), Status.Ok);
    assert.equal(await getBalance(s.db, many.cardAccountId).then((b) => b.balance), 7000);
    // The card's bind budget is spent: its owner binds with the 身份证 as well.
    const holder = await account(s, "10.50.2.1");
    const asked = await bind(holder.c, {
      student_number: many.studentNumber,
      password: many.password,
    });
    assert.equal(asked.status, 429);
    assert.match(asked.text, /请同时填写身份证号/);
    assert.match(asked.text, /name="id_number"/);
    const proven = await bind(holder.c, {
      student_number: many.studentNumber,
      password: many.password,
      id_number: many.idNumber,
    });
    assert.equal(proven.status, 200, proven.text);
    assert.equal((await findBoundCard(s.db, holder.accountId))?.cardAccountId, many.cardAccountId);
  } finally {
    await pos.close();
    await s.h.close();
  }
});

Deno.test("guessing a card password at scale stays capped: after 10 wrong binds per card an hour, from any accounts and addresses at once, even the right password is refused unchecked", async () => {
  const s = await setup();
  try {
    const target = await card(s);
    const strangers = [];
    for (let i = 0; i < 16; i++) strangers.push(await account(s, `10.51.0.${i + 1}`));
    // All at once: the budget is taken before a guess is checked, so parallel guesses cannot
    // overrun it.
    const tries = await Promise.all(
      strangers.map((st, i) =>
        bind(st.c, { student_number: target.studentNumber, password: `2${i}0000`.slice(0, 6) })
      ),
    );
    // Nine are told "wrong"; the tenth spends the budget and is told to add the 身份证.
    const checked = tries.filter((t) => t.status === 422).length;
    assert.equal(
      checked,
      CARD_PASSWORD_RULES.bindCard.limit - 1,
      tries.map((t) => t.status).join(),
    );
    assert.ok(tries.every((t) => t.status === 422 || t.status === 429));
    // The 11th: a stranger with the right password (guessed, or known) still does not bind.
    const lucky = await account(s, "10.51.1.1");
    const right = await bind(lucky.c, {
      student_number: target.studentNumber,
      password: target.password,
    });
    assert.equal(right.status, 429);
    assert.match(right.text, /请同时填写身份证号/);
    // A wrong 身份证 is no way round it, and does not spend the owner's budget.
    const wrongId = await bind(lucky.c, {
      student_number: target.studentNumber,
      password: target.password,
      id_number: withCheck("53010219990101123"),
    });
    assert.equal(wrongId.status, 422);
    assert.match(wrongId.text, /学号、身份证号或一卡通密码错误/);
    assert.equal(await findBoundCard(s.db, lucky.accountId), null);

    // An unknown 学号 answers exactly the same way, so the page tells no 学号 apart.
    const ghostTries = [];
    for (let i = 0; i < CARD_PASSWORD_RULES.bindCard.limit; i++) {
      const st = await account(s, `10.51.2.${i + 1}`);
      ghostTries.push(await bind(st.c, { student_number: "L99999999", password: "123456" }));
    }
    assert.deepEqual(
      ghostTries.map((t) => t.status),
      [...Array(CARD_PASSWORD_RULES.bindCard.limit - 1).fill(422), 429],
    );
    const ghost = await bind(lucky.c, { student_number: "L99999999", password: "123456" });
    assert.equal(ghost.status, 429);
    const message = (t: string) => /class="field-error"[^>]*>([^<]+)</.exec(t)?.[1];
    assert.equal(message(ghost.text), message(right.text));
  } finally {
    await s.h.close();
  }
});

Deno.test("the holder's own checks keep their counter: five wrong card passwords at a reader lock the reader and the bind, never a stranger's binds", async () => {
  const s = await setup();
  const pos = await reader(s);
  try {
    const c = await card(s);
    // A stranger's wrong binds leave the reader's count alone.
    const stranger = await account(s, "10.52.0.9");
    for (let i = 0; i < 4; i++) {
      await bind(stranger.c, { student_number: c.studentNumber, password: `88888${i}` });
    }
    for (let i = 0; i < 4; i++) {
      const r = await pos.reply(c.chip, 3000, `99999${i}`);
      assert.equal(r.status, Status.WrongPassword);
      assert.equal(r.triesLeft, 4 - i, "the reader's tries were spent by someone else");
    }
    assert.equal(await pos.pay(c.chip, 3000, "999994"), Status.PasswordLocked);
    assert.equal(await pos.pay(c.chip, 3000, c.password), Status.PasswordLocked);
    // Whoever has the card (and tried its password) cannot bind it either meanwhile.
    const other = await account(s, "10.52.0.1");
    const refused = await bind(other.c, { student_number: c.studentNumber, password: c.password });
    assert.equal(refused.status, 429);
    assert.match(refused.text, /已锁定/);
  } finally {
    await pos.close();
    await s.h.close();
  }
});

// ---- Signing in ----

Deno.test("wrong logins from address A stop neither the owner at address B nor the owner with the right password at A after a recent success", async () => {
  const s = await setup();
  try {
    const owner = await account(s, "10.60.0.1");
    await owner.c.post("/logout");
    const stranger = new TestClient(s.app, s.config, "10.60.0.1");
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await stranger.post("/login", { phone: owner.phone, password: `Guess${i}x99` });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.ok(statuses.includes(429), `the guessing address was never slowed: ${statuses}`);
    // The owner's browser signed in there before: the stranger's guesses do not slow it.
    assert.equal(
      (await owner.c.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      303,
    );
    const atB = new TestClient(s.app, s.config, "10.60.0.2");
    assert.equal(
      (await atB.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing a login password at scale stays capped: after 10 wrong per phone an hour from rotating addresses even the right one is refused, but the owner's proven address and an emailed code get in", async () => {
  const s = await setup();
  try {
    const owner = await account(s, "10.61.0.1");
    await owner.c.post("/logout");
    const email = `lockout${serial}@example.com`;
    await s.db.updateTable("accounts").set({ email, email_verified_at: new Date() })
      .where("id", "=", owner.accountId).execute();
    const tries = await Promise.all(
      Array.from(
        { length: 14 },
        (_, i) =>
          new TestClient(s.app, s.config, `10.61.1.${i + 1}`).post("/login", {
            phone: owner.phone,
            password: `Spread${i}x99`,
          }).then(async (r) => {
            await r.body?.cancel();
            return r.status;
          }),
      ),
    );
    assert.equal(tries.filter((t) => t === 422).length, SIGN_IN_RULE.budget.limit - 1, `${tries}`);
    assert.ok(tries.every((t) => t === 422 || t === 429), `${tries}`);
    // Refused unchecked now, the right password too, from a fresh address.
    const fresh = new TestClient(s.app, s.config, "10.61.2.1");
    const refused = await fresh.post("/login", { phone: owner.phone, password: PASSWORD });
    assert.equal(refused.status, 429);
    assert.match(await refused.text(), /忘记密码/);
    // The owner, in the browser they signed in with before, gets in.
    assert.equal(
      (await owner.c.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      303,
    );
    // And anywhere with an emailed code (忘记密码).
    const sent = await fresh.post("/password/forgot/code", { phone: owner.phone });
    assert.equal(sent.status, 200, await sent.text());
    const mail = (await listOutbox(s.db, { to: email }))[0];
    const code = /\b(\d{6})\b/.exec(mail?.bodyText ?? "")?.[1];
    assert.ok(code, "no reset code in the development outbox");
    const reset = await fresh.post("/password/forgot", {
      phone: owner.phone,
      code,
      new_password: "Renewed123",
    });
    assert.equal(reset.status, 303);
    assert.equal(
      (await fresh.post("/login", { phone: owner.phone, password: "Renewed123" })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

/**
 * Wrong sign-ins from one new address each of `net` until the name's budget is spent: each is told
 * "wrong" (`wrongStatus`), the last one to wait.
 */
async function spendBudget(
  s: Setup,
  sign: { path: string; fields: (i: number) => Record<string, string>; wrongStatus: number },
  net: string,
) {
  const statuses: number[] = [];
  for (let i = 0; i < SIGN_IN_RULE.budget.limit; i++) {
    const c = new TestClient(s.app, s.config, `${net}.${i + 1}`);
    const res = await c.post(sign.path, sign.fields(i));
    statuses.push(res.status);
    await res.body?.cancel();
  }
  const wrong = Array(SIGN_IN_RULE.budget.limit - 1).fill(sign.wrongStatus);
  assert.deepEqual(statuses, [...wrong, 429]);
}

Deno.test("after strangers elsewhere spend a phone's budget, its owner signs in from a new browser at an address with a recent success; such addresses together stop at their cap, the owner's browser still gets in", async () => {
  const s = await setup();
  try {
    // The owner signed in lately at home (A) and at the library (B).
    const owner = await account(s, "10.63.0.1");
    await owner.c.post("/logout");
    const library = new TestClient(s.app, s.config, "10.63.0.2");
    assert.equal(
      (await library.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      303,
    );
    await library.post("/logout");
    await spendBudget(s, {
      path: "/login",
      fields: (i) => ({ phone: owner.phone, password: `Far${i}x999` }),
      wrongStatus: 422,
    }, "10.63.1");
    const elsewhere = new TestClient(s.app, s.config, "10.63.2.1");
    assert.equal(
      (await elsewhere.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      429,
    );
    // A new browser (a borrowed phone) at home: the right password gets in.
    const borrowed = new TestClient(s.app, s.config, "10.63.0.1");
    const home = await borrowed.post("/login", { phone: owner.phone, password: PASSWORD });
    assert.equal(home.status, 303, await home.text());
    await borrowed.post("/logout");
    // A stranger behind the same address guesses on, slowed, up to the addresses' cap.
    const neighbour = new TestClient(s.app, s.config, "10.63.0.1");
    const tries: number[] = [];
    for (let i = 0; i < SIGN_IN_RULE.budget.addressLimit - SIGN_IN_RULE.budget.limit; i++) {
      const res = await neighbour.post("/login", { phone: owner.phone, password: `Near${i}x99` });
      tries.push(res.status);
      await res.body?.cancel();
    }
    assert.deepEqual(tries, [422, 422, 422, 422, 429]);
    // The cap holds at every proven address: a new browser at the library is refused unchecked.
    const atLibrary = new TestClient(s.app, s.config, "10.63.0.2");
    const refused = await atLibrary.post("/login", { phone: owner.phone, password: PASSWORD });
    assert.equal(refused.status, 429);
    assert.match(await refused.text(), /忘记密码/);
    // The owner's own browser keeps the last places strangers cannot reach.
    assert.equal(
      (await owner.c.post("/login", { phone: owner.phone, password: PASSWORD })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("many wrong logins from one address (a campus NAT) slow it by seconds and never lock it; its proven users sign in at once", async () => {
  const s = await setup();
  try {
    const regular = await account(s, "10.62.0.1");
    await regular.c.post("/logout");
    const newcomer = await account(s, "10.62.9.9", { signIn: false });
    const nat = new TestClient(s.app, s.config, "10.62.0.1");
    let last = 0;
    for (let i = 0; i < SIGN_IN_RULE.address.free + 10; i++) {
      const res = await nat.post("/login", {
        phone: `139${String(i).padStart(8, "0")}`,
        password: "Spray1234",
      });
      last = res.status;
      await res.body?.cancel();
    }
    assert.equal(last, 429);
    const again = new TestClient(s.app, s.config, "10.62.0.1");
    const waits = await again.post("/login", { phone: newcomer.phone, password: PASSWORD });
    assert.equal(waits.status, 429);
    const wait = /请(\d+)秒后再试/.exec(await waits.text());
    assert.ok(wait && Number(wait[1]) <= SIGN_IN_RULE.address.maxDelaySeconds, "a long lock");
    assert.equal(
      (await again.post("/login", { phone: regular.phone, password: PASSWORD })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

// ---- 忘记密码: the email code ----

/** An account with a bound email (`signIn: false`: its owner never signed in anywhere yet). */
async function withEmail(s: Setup, ip: string, options: { signIn?: boolean } = {}) {
  const a = await account(s, ip, options);
  const email = `owner${serial}@example.com`;
  await s.db.updateTable("accounts").set({ email, email_verified_at: new Date() })
    .where("id", "=", a.accountId).execute();
  return { ...a, email };
}

/** Asks for a 忘记密码 code in browser `c`; the status, and the code mailed when one was. */
async function askCode(s: Setup, c: TestClient, to: { phone: string; email: string }) {
  const before = (await listOutbox(s.db, { to: to.email, limit: 1 }))[0]?.id ?? 0;
  const res = await c.post("/password/forgot/code", { phone: to.phone });
  const text = await res.text();
  const mail = (await listOutbox(s.db, { to: to.email, limit: 1 }))[0];
  const code = mail && mail.id !== before ? /验证码：(\d{6})/.exec(mail.bodyText)?.[1] : undefined;
  return { status: res.status, text, code };
}

function resetWith(c: TestClient, phone: string, code: string, password = "Renewed123") {
  return c.post("/password/forgot", { phone, code, new_password: password });
}

function otherThan(code: string, i: number): string {
  const n = (Number(code) + 1 + i) % 1_000_000;
  return String(n).padStart(6, "0");
}

Deno.test("a stranger who knows only the phone neither uses up its owner's 忘记密码 codes nor kills the owner's code", async () => {
  const s = await setup();
  try {
    const owner = await withEmail(s, "10.64.0.1", { signIn: false });
    const ownerBrowser = new TestClient(s.app, s.config, "10.64.0.1");
    const mine = await askCode(s, ownerBrowser, owner);
    assert.equal(mine.status, 200, mine.text);
    assert.ok(mine.code);

    // A stranger asks again and again from one address, a new browser each time.
    const asked: number[] = [];
    let strangerBrowser = new TestClient(s.app, s.config, "10.64.9.1");
    for (let i = 0; i <= RESET_CODE_SENDS.accountAddress.limit; i++) {
      strangerBrowser = new TestClient(s.app, s.config, "10.64.9.1");
      asked.push((await askCode(s, strangerBrowser, owner)).status);
    }
    assert.deepEqual(asked, [...Array(RESET_CODE_SENDS.accountAddress.limit).fill(200), 429]);
    // and guesses: at a code it asked for (which then dies), and in a browser that asked none.
    const asker = new TestClient(s.app, s.config, "10.64.9.2");
    assert.equal((await askCode(s, asker, owner)).status, 200);
    for (let i = 0; i < CODE_MAX_ATTEMPTS + 2; i++) {
      for (const c of [asker, new TestClient(s.app, s.config, "10.64.9.3")]) {
        const res = await resetWith(c, owner.phone, otherThan(mine.code!, i), "Stolen1234");
        assert.equal(res.status, 422);
        await res.body?.cancel();
      }
    }
    // Even the owner's code itself is refused in a browser that did not ask for it.
    const elsewhere = await resetWith(
      new TestClient(s.app, s.config, "10.64.9.4"),
      owner.phone,
      mine.code!,
      "Stolen1234",
    );
    assert.equal(elsewhere.status, 422);
    assert.match(await elsewhere.text(), /请先获取验证码/);

    // The owner's code still works in the owner's browser.
    const reset = await resetWith(ownerBrowser, owner.phone, mine.code!);
    assert.equal(reset.status, 303, await reset.text());
    assert.equal(
      (await ownerBrowser.post("/login", { phone: owner.phone, password: "Renewed123" })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("忘记密码 codes stay unguessable: strangers get 5 codes an account a day at 5 tries each, then only the owner's browser or address gets one", async () => {
  const s = await setup();
  try {
    const owner = await withEmail(s, "10.65.0.1");
    await owner.c.post("/logout");
    const perAddress = RESET_CODE_SENDS.accountAddress.limit;
    const strangers: TestClient[] = [];
    const statuses: number[] = [];
    for (let i = 0; i < RESET_CODE_SENDS.account.limit; i++) {
      const net = i < perAddress ? "10.65.1" : "10.65.2";
      const c = new TestClient(s.app, s.config, `${net}.${i + 1}`);
      strangers.push(c);
      statuses.push((await askCode(s, c, owner)).status);
    }
    assert.deepEqual(statuses, Array(RESET_CODE_SENDS.account.limit).fill(200));
    // Each of those codes takes five wrong tries, then is dead for the right one too.
    const tries: string[] = [];
    for (let i = 0; i <= CODE_MAX_ATTEMPTS; i++) {
      const res = await resetWith(strangers[0], owner.phone, String(100000 + i), "Stolen1234");
      tries.push(/id="e-code">([^<]+)</.exec(await res.text())?.[1] ?? String(res.status));
    }
    assert.deepEqual(
      tries.slice(0, CODE_MAX_ATTEMPTS - 1),
      [4, 3, 2, 1].map((n) => `验证码错误，还可尝试${n}次`),
    );
    assert.match(tries.at(-1)!, /验证码错误次数过多/);
    // The account's day is spent for strangers, wherever they ask from.
    const more = await askCode(s, new TestClient(s.app, s.config, "10.65.3.1"), owner);
    assert.equal(more.status, 429);
    assert.match(more.text, /教学楼 503 图文信息中心/);
    assert.equal(more.code, undefined);
    // A new browser at the owner's address, and the owner's own browser, still get theirs.
    const home = new TestClient(s.app, s.config, "10.65.0.1");
    const atHome = await askCode(s, home, owner);
    assert.equal(atHome.status, 200, atHome.text);
    const own = await askCode(s, owner.c, owner);
    assert.equal(own.status, 200, own.text);
    assert.equal((await resetWith(owner.c, owner.phone, own.code!)).status, 303);
  } finally {
    await s.h.close();
  }
});

// ---- Staff ----

Deno.test("a stranger cannot lock the staff admin out: wrong sign-ins stop neither admin at the office nor from a new address", async () => {
  const s = await setup();
  try {
    await seedDemoData(s);
    const office = new TestClient(s.app, s.config, "10.70.0.1");
    const password = await signInStaffSettingPassword(office, {
      username: "admin",
      password: "Admin12345",
      newPassword: "Office12345",
    });
    await office.post("/admin/logout");
    const stranger = new TestClient(s.app, s.config, "10.70.9.1");
    for (let i = 0; i < 30; i++) {
      const res = await stranger.post("/admin/login", {
        username: "admin",
        password: `Bad${i}x999`,
      });
      await res.body?.cancel();
    }
    const travelling = new TestClient(s.app, s.config, "10.70.0.2");
    assert.equal(
      (await travelling.post("/admin/login", { username: "admin", password })).status,
      303,
    );
    // Guesses from many addresses spend the name's budget; the office still signs in.
    for (let i = 0; i < SIGN_IN_RULE.budget.limit; i++) {
      const res = await new TestClient(s.app, s.config, `10.70.8.${i + 1}`).post("/admin/login", {
        username: "admin",
        password: `Wide${i}x999`,
      });
      await res.body?.cancel();
    }
    assert.equal((await office.post("/admin/login", { username: "admin", password })).status, 303);
  } finally {
    await s.h.close();
  }
});

Deno.test("after strangers elsewhere spend a staff username's budget, the member signs in from a new browser at the office; away from it a system administrator's reset lets them in", async () => {
  const s = await setup();
  try {
    const start = { password: "Start12345" };
    await createStaff(s.db, { ...start, username: "chief", name: "主任", roles: [ROLES.sysadmin] });
    await createStaff(s.db, {
      ...start,
      username: "cashier",
      name: "出纳",
      roles: [ROLES.finance],
    });
    const desk = new TestClient(s.app, s.config, "10.75.0.1");
    assert.equal(
      (await desk.post("/admin/login", { username: "cashier", password: "Start12345" })).status,
      303,
    );
    await desk.post("/admin/logout");
    await spendBudget(s, {
      path: "/admin/login",
      fields: (i) => ({ username: "cashier", password: `Far${i}x999` }),
      wrongStatus: 400,
    }, "10.75.1");
    // The office PC was reinstalled: a new browser at the office address.
    const reinstalled = new TestClient(s.app, s.config, "10.75.0.1");
    const office = await reinstalled.post("/admin/login", {
      username: "cashier",
      password: "Start12345",
    });
    assert.equal(office.status, 303, await office.text());
    assert.equal((await reinstalled.get("/admin")).status, 200);
    await reinstalled.post("/admin/logout");

    // Away from the office, in a new browser, the spent budget refuses even the right password;
    // the system administrator's reset (员工账号 → 重置密码) forgets it.
    const away = new TestClient(s.app, s.config, "10.75.2.1");
    const refused = await away.post("/admin/login", {
      username: "cashier",
      password: "Start12345",
    });
    assert.equal(refused.status, 429);
    await refused.body?.cancel();
    const chief = new TestClient(s.app, s.config, "10.75.3.1");
    await chief.post("/admin/login", { username: "chief", password: "Start12345" });
    const list = await chief.page("/admin/staff");
    const cashier = await s.db.selectFrom("staff").select("id").where("username", "=", "cashier")
      .executeTakeFirstOrThrow();
    const action = `/admin/staff/${cashier.id}/reset-password`;
    assert.ok(list.includes(`action="${action}"`), "no 重置密码 form for the member");
    const done = await chief.post(action, {});
    const temp = /data-testid="temp-password">([^<]+)</.exec(await done.text())?.[1];
    assert.ok(temp, "no temporary password shown");
    assert.equal(
      (await away.post("/admin/login", { username: "cashier", password: temp })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("a staff password change ends every other session of that member, not this one", async () => {
  const s = await setup();
  try {
    await createStaff(s.db, {
      username: "boss",
      name: "老板",
      password: "Boss12345",
      roles: [ROLES.sysadmin],
    });
    const desk = new TestClient(s.app, s.config, "10.71.0.1");
    const laptop = new TestClient(s.app, s.config, "10.71.0.2");
    for (const c of [desk, laptop]) {
      assert.equal(
        (await c.post("/admin/login", { username: "boss", password: "Boss12345" })).status,
        303,
      );
    }
    assert.equal((await laptop.get("/admin")).status, 200);
    const changed = await desk.post("/admin/password", {
      old_password: "Boss12345",
      new_password: "Boss67890x",
    });
    assert.equal(changed.status, 303);
    assert.equal((await desk.get("/admin")).status, 200);
    const gone = await laptop.get("/admin");
    assert.equal(gone.status, 303);
    assert.match(gone.headers.get("location") ?? "", /^\/admin\/login/);
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing the old password on the staff 修改密码 form is throttled: after five even the right one waits", async () => {
  const s = await setup();
  try {
    await createStaff(s.db, {
      username: "clerk",
      name: "职员",
      password: "Clerk12345",
      roles: [ROLES.finance],
    });
    const c = new TestClient(s.app, s.config, "10.72.0.1");
    await c.post("/admin/login", { username: "clerk", password: "Clerk12345" });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await c.post("/admin/password", {
        old_password: `Guess${i}x123`,
        new_password: "Taken12345x",
      });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.deepEqual(statuses, [422, 422, 422, 422, 429]);
    const right = await c.post("/admin/password", {
      old_password: "Clerk12345",
      new_password: "Taken12345x",
    });
    assert.equal(right.status, 429);
    assert.match(await right.text(), /原密码错误次数过多，请\d+分钟后再试/);
    // The password did not change.
    const fresh = new TestClient(s.app, s.config, "10.72.0.2");
    assert.equal(
      (await fresh.post("/admin/login", { username: "clerk", password: "Clerk12345" })).status,
      303,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("the demo admin's published password is changed before anything else in the console", async () => {
  const s = await setup();
  try {
    await seedDemoData(s);
    const c = new TestClient(s.app, s.config, "10.73.0.1");
    assert.equal(
      (await c.post("/admin/login", { username: "admin", password: "Admin12345" })).status,
      303,
    );
    for (const path of ["/admin", "/admin/cards", "/admin/staff", "/admin/audit"]) {
      const res = await c.get(path);
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.get("location"), "/admin/password", path);
    }
    const post = await c.post("/admin/staff", {
      username: "sneaky",
      name: "x",
      password: "Sneaky12345",
      roles: ROLES.sysadmin,
    });
    assert.equal(post.status, 303);
    assert.equal(post.headers.get("location"), "/admin/password");
    assert.match(await c.page("/admin/password"), /请先设置新密码/);
    const same = await c.post("/admin/password", {
      old_password: "Admin12345",
      new_password: "Admin12345",
    });
    assert.equal(same.status, 422);
    const changed = await c.post("/admin/password", {
      old_password: "Admin12345",
      new_password: "Fresh12345x",
    });
    assert.equal(changed.status, 303);
    assert.equal((await c.get("/admin")).status, 200);
    const old = new TestClient(s.app, s.config, "10.73.0.2");
    assert.equal(
      (await old.post("/admin/login", { username: "admin", password: "Admin12345" })).status,
      400,
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("a system administrator's reset of a staff password ends that member's sessions, and the temporary one is changed before anything else", async () => {
  const s = await setup();
  try {
    const start = { password: "Start12345" };
    await createStaff(s.db, { ...start, username: "root", name: "根", roles: [ROLES.sysadmin] });
    await createStaff(s.db, { ...start, username: "teller", name: "出纳", roles: [ROLES.finance] });
    const root = new TestClient(s.app, s.config, "10.74.0.1");
    const teller = new TestClient(s.app, s.config, "10.74.0.2");
    await root.post("/admin/login", { username: "root", password: "Start12345" });
    await teller.post("/admin/login", { username: "teller", password: "Start12345" });
    assert.equal((await teller.get("/admin")).status, 200);
    const list = await root.page("/admin/staff");
    const action = /action="(\/admin\/staff\/\d+\/reset-password)"/.exec(list)?.[1];
    assert.ok(action, "no 重置密码 form on 员工账号");
    const own = /\/admin\/staff\/(\d+)\/reset-password/.exec(action)![1];
    const mine = await s.db.selectFrom("staff").select("id").where("username", "=", "root")
      .executeTakeFirstOrThrow();
    assert.notEqual(Number(own), mine.id, "the form offers to reset one's own password");
    const done = await root.post(action, {});
    assert.equal(done.status, 200);
    const temp = /data-testid="temp-password">([^<]+)</.exec(await done.text())?.[1];
    assert.ok(temp, "no temporary password shown");
    assert.equal((await teller.get("/admin")).status, 303, "the member's session survived");
    const again = new TestClient(s.app, s.config, "10.74.0.3");
    assert.equal(
      (await again.post("/admin/login", { username: "teller", password: temp })).status,
      303,
    );
    const first = await again.get("/admin/finance");
    assert.equal(first.headers.get("location"), "/admin/password");
    assert.equal(
      (await again.post("/admin/password", { old_password: temp, new_password: "Mine12345x" }))
        .status,
      303,
    );
    assert.equal((await again.get("/admin")).status, 200);
  } finally {
    await s.h.close();
  }
});

import assert from "node:assert/strict";
import { cardWorld, IDS, makeAccount } from "../testkit/mod.ts";
import {
  bindCard,
  blocklistSince,
  changeCardPassword,
  checkCardPassword,
  closeCardAccount,
  createCardAccountForTest,
  currentBlocklistVersion,
  findBoundCard,
  findCardByChip,
  liftLoss,
  onBlocklistChange,
  reissueCard,
  reportLoss,
  resetCardPassword,
  staffLiftLoss,
  staffReportLoss,
  unlockCardPassword,
} from "./mod.ts";
import { createStaff, listAudit, ROLES } from "../staff/mod.ts";
import { DomainError } from "../platform/errors.ts";

async function rejects(p: Promise<unknown>, message: RegExp, field?: string): Promise<DomainError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DomainError, `expected a DomainError, got ${err}`);
    assert.match(err.userMessage, message);
    if (field) assert.equal(err.field, field);
    return err;
  }
  assert.fail(`expected rejection with ${message}`);
}

Deno.test("binding with 学号 and the default password (last 6 of the 身份证, upper-case X) binds the card", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  assert.equal(await findBoundCard(env.db, accountId), null);
  // A lower-case x is not the default: the manual says to type an upper-case X.
  await rejects(
    bindCard(env.db, env.deps, { accountId, studentNumber: "2024010001", password: "15123x" }),
    /学号或一卡通密码错误/,
  );
  await bindCard(env.db, env.deps, {
    accountId,
    studentNumber: "2024010001",
    password: "15123X",
  });
  assert.deepEqual(await findBoundCard(env.db, accountId), {
    cardAccountId: env.zhang.cardAccountId,
    schoolId: env.school.id,
    studentNumber: "2024010001",
    name: "张三",
    status: "normal",
    activeChipNumber: "3158642907",
    passwordIsDefault: true,
    paymentCodeFrozen: false,
  });
});

Deno.test("an unknown 学号 and a wrong password get the same answer; a card of another school is not found", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  const unknown = await rejects(
    bindCard(env.db, env.deps, { accountId, studentNumber: "2099999999", password: "15123X" }),
    /学号或一卡通密码错误，还可尝试4次/,
  );
  // Another account, since the tries left are the trying account's own.
  const second = await makeAccount(env.db, env.school.id);
  const wrong = await rejects(
    bindCard(env.db, env.deps, {
      accountId: second,
      studentNumber: "2024010001",
      password: "000000",
    }),
    /学号或一卡通密码错误，还可尝试4次/,
  );
  assert.equal(unknown.userMessage, wrong.userMessage);
  const other = await makeAccount(env.db, env.otherSchool.id);
  await rejects(
    bindCard(env.db, env.deps, {
      accountId: other,
      studentNumber: "2024010001",
      password: "15123X",
    }),
    /学号或一卡通密码错误.*请确认学号属于昆明理工学院/,
  );
  assert.equal(await findBoundCard(env.db, other), null);
});

Deno.test("a card binds to one login account only, and a login account to one card", async () => {
  await using env = await cardWorld();
  const a = await makeAccount(env.db, env.school.id);
  const b = await makeAccount(env.db, env.school.id);
  await bindCard(env.db, env.deps, {
    accountId: a,
    studentNumber: "2024010001",
    password: "15123X",
  });
  await rejects(
    bindCard(env.db, env.deps, { accountId: b, studentNumber: "2024010001", password: "15123X" }),
    /已被其他一信通账号绑定，请到一卡通中心办理/,
  );
  await createCardAccountForTest(env.db, env.deps, {
    schoolId: env.school.id,
    studentNumber: "2024010002",
    idNumber: IDS.li,
  });
  await rejects(
    bindCard(env.db, env.deps, { accountId: a, studentNumber: "2024010002", password: "204526" }),
    /您已绑定一卡通账号/,
  );
  assert.equal(await findBoundCard(env.db, b), null);
  // The database refuses a second card for one login account even if the service were bypassed.
  await assert.rejects(
    env.db.updateTable("card_accounts").set({ account_id: a }).where(
      "student_number",
      "=",
      "2024010002",
    ).execute(),
  );
});

Deno.test("five wrong card passwords lock every check for 30 minutes, even the right one; staff unlock", async () => {
  await using env = await cardWorld();
  const id = env.zhang.cardAccountId;
  for (let i = 4; i >= 1; i--) {
    assert.deepEqual(await checkCardPassword(env.db, env.deps, id, "999999"), {
      ok: false,
      locked: false,
      remaining: i,
      retryAfter: 0,
    });
  }
  const fifth = await checkCardPassword(env.db, env.deps, id, "999999");
  assert.equal(fifth.ok, false);
  assert.ok(!fifth.ok && fifth.locked && fifth.retryAfter > 1790 && fifth.retryAfter <= 1800);
  const right = await checkCardPassword(env.db, env.deps, id, "15123X");
  assert.equal(right.ok, false);
  const accountId = await makeAccount(env.db, env.school.id);
  await rejects(
    bindCard(env.db, env.deps, { accountId, studentNumber: "2024010001", password: "15123X" }),
    /已锁定.*30分钟/,
  );
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  await unlockCardPassword(env.db, { staffId }, id);
  assert.deepEqual(await checkCardPassword(env.db, env.deps, id, "15123X"), { ok: true });
  await rejects(unlockCardPassword(env.db, { staffId }, id), /未被锁定/);
  assert.equal((await listAudit(env.db, { action: "card.password_unlocked" })).length, 1);
});

Deno.test("a success clears the count of wrong tries (5 in a row lock, not 5 in total)", async () => {
  await using env = await cardWorld();
  const id = env.zhang.cardAccountId;
  for (let i = 0; i < 4; i++) await checkCardPassword(env.db, env.deps, id, "999999");
  assert.deepEqual(await checkCardPassword(env.db, env.deps, id, "15123X"), { ok: true });
  const next = await checkCardPassword(env.db, env.deps, id, "999999");
  assert.ok(!next.ok && next.remaining === 4 && !next.locked);
});

Deno.test("changing the card password enforces the rules and the default stops working", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  await bindCard(env.db, env.deps, {
    accountId,
    studentNumber: "2024010001",
    password: "15123X",
  });
  const change = (oldPassword: string, newPassword: string) =>
    changeCardPassword(env.db, env.deps, { accountId, oldPassword, newPassword });
  await rejects(change("15123X", "12345"), /6位数字/, "new_password");
  await rejects(change("15123X", "12a456"), /6位数字/, "new_password");
  await rejects(change("15123X", "888888"), /相同/, "new_password");
  await rejects(change("15123X", "123456"), /连续/, "new_password");
  await rejects(change("15123X", "987654"), /连续/, "new_password");
  await rejects(change("000000", "480913"), /一卡通密码错误，还可尝试4次/, "old_password");
  const li = await createCardAccountForTest(env.db, env.deps, {
    studentNumber: "2024010002",
    idNumber: IDS.li,
  });
  void li;
  assert.equal((await findBoundCard(env.db, accountId))!.passwordIsDefault, true);
  await change("15123X", "480913");
  assert.equal((await findBoundCard(env.db, accountId))!.passwordIsDefault, false);
  assert.equal(
    (await checkCardPassword(env.db, env.deps, env.zhang.cardAccountId, "15123X")).ok,
    false,
  );
  assert.equal(
    (await checkCardPassword(env.db, env.deps, env.zhang.cardAccountId, "480913")).ok,
    true,
  );
  await rejects(change("480913", "480913"), /不能与原密码相同/);

  // A card whose default is all digits: the new password must not be that default.
  const b = await makeAccount(env.db, env.school.id);
  await bindCard(env.db, env.deps, {
    accountId: b,
    studentNumber: "2024010002",
    password: "204526",
  });
  await rejects(
    changeCardPassword(env.db, env.deps, {
      accountId: b,
      oldPassword: "204526",
      newPassword: "204526",
    }),
    /默认密码/,
  );

  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  await resetCardPassword(env.db, { staffId }, env.zhang.cardAccountId);
  assert.equal(
    (await checkCardPassword(env.db, env.deps, env.zhang.cardAccountId, "15123X")).ok,
    true,
  );
  assert.equal((await findBoundCard(env.db, accountId))!.passwordIsDefault, true);
});

Deno.test("loss puts the chip on the blocklist; unloss takes it off; readers are told after commit", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  await bindCard(env.db, env.deps, {
    accountId,
    studentNumber: "2024010001",
    password: "15123X",
  });
  const seen: number[] = [];
  const stop = onBlocklistChange((v) => seen.push(v));
  const v0 = await currentBlocklistVersion(env.db);
  const proof = { accountId, chipNumber: "3158642907", idNumber: IDS.zhang, password: "15123X" };

  await rejects(
    reportLoss(env.db, env.deps, { ...proof, chipNumber: "2024010001" }),
    /芯片卡号不是学号/,
    "chip_number",
  );
  await rejects(
    reportLoss(env.db, env.deps, { ...proof, idNumber: IDS.li }),
    /身份证号与一卡通登记信息不符/,
    "id_number",
  );
  await rejects(
    reportLoss(env.db, env.deps, { ...proof, idNumber: "53010220050315123Y" }),
    /身份证号格式不正确/,
    "id_number",
  );
  await rejects(
    reportLoss(env.db, env.deps, { ...proof, password: "111111" }),
    /一卡通密码错误/,
    "password",
  );
  assert.equal(await currentBlocklistVersion(env.db), v0);
  assert.equal((await findBoundCard(env.db, accountId))!.status, "normal");

  await reportLoss(env.db, env.deps, { ...proof, idNumber: "53010220050315123x" });
  const v1 = await currentBlocklistVersion(env.db);
  assert.deepEqual(await blocklistSince(env.db, v0), {
    version: v1,
    added: ["3158642907"],
    removed: [],
    complete: true,
  });
  assert.deepEqual(seen, [v1]);
  assert.equal((await findCardByChip(env.db, "3158642907"))!.chipStatus, "lost");
  assert.equal((await findBoundCard(env.db, accountId))!.status, "loss_reported");
  await rejects(reportLoss(env.db, env.deps, proof), /已挂失/);

  await rejects(
    liftLoss(env.db, env.deps, { ...proof, chipNumber: "3158642908" }),
    /芯片卡号不正确/,
    "chip_number",
  );
  await liftLoss(env.db, env.deps, proof);
  const v2 = await currentBlocklistVersion(env.db);
  assert.deepEqual(await blocklistSince(env.db, v1), {
    version: v2,
    added: [],
    removed: ["3158642907"],
    complete: true,
  });
  assert.deepEqual(await blocklistSince(env.db, v0), {
    version: v2,
    added: [],
    removed: [],
    complete: true,
  });
  assert.deepEqual(seen, [v1, v2]);
  await rejects(liftLoss(env.db, env.deps, proof), /未挂失/);
  stop();
});

Deno.test("after a reissue the old chip stays blocked for good and the holder lifts the loss with either chip number", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  await bindCard(env.db, env.deps, {
    accountId,
    studentNumber: "2024010001",
    password: "15123X",
  });
  const proof = { accountId, chipNumber: "3158642907", idNumber: IDS.zhang, password: "15123X" };
  await reportLoss(env.db, env.deps, proof);
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  const v1 = await currentBlocklistVersion(env.db);
  await rejects(
    reissueCard(env.db, { staffId }, env.zhang.cardAccountId, "3158642907"),
    /这是该卡当前的芯片卡号/,
  );
  await rejects(
    reissueCard(env.db, { staffId }, env.zhang.cardAccountId, "<b>x</b>"),
    /格式不正确/,
  );
  await reissueCard(env.db, { staffId }, env.zhang.cardAccountId, "4000000001");
  const afterReissue = await blocklistSince(env.db, 0);
  assert.deepEqual(afterReissue.added.sort(), ["3158642907", "4000000001"]);
  assert.equal((await findCardByChip(env.db, "3158642907"))!.chipStatus, "cancelled");
  assert.equal((await findBoundCard(env.db, accountId))!.activeChipNumber, "4000000001");
  void v1;

  await liftLoss(env.db, env.deps, { ...proof, chipNumber: "4000000001" });
  const d = await blocklistSince(env.db, 0);
  assert.deepEqual(d.added, ["3158642907"]);
  assert.equal((await findCardByChip(env.db, "4000000001"))!.chipStatus, "active");

  // Next loss episode: the long-cancelled chip no longer lifts a loss.
  await reportLoss(env.db, env.deps, { ...proof, chipNumber: "4000000001" });
  await rejects(liftLoss(env.db, env.deps, proof), /芯片卡号不正确/);
  // The old chip reported lost, then replaced, does.
  await reissueCard(env.db, { staffId }, env.zhang.cardAccountId, "4000000002");
  await liftLoss(env.db, env.deps, { ...proof, chipNumber: "4000000001" });
  const final = await blocklistSince(env.db, 0);
  assert.deepEqual(final.added.sort(), ["3158642907", "4000000001"]);
  assert.deepEqual(final.removed, []);
  const audit = await listAudit(env.db, { action: "card.reissued" });
  assert.equal(audit.length, 2);
  assert.deepEqual((audit[1].before as { status: string }).status, "loss_reported");
});

Deno.test("a reissue of a normal card blocks the old chip at once; counter loss and unloss are audited", async () => {
  await using env = await cardWorld();
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  const id = env.zhang.cardAccountId;
  await reissueCard(env.db, { staffId }, id, "4000000009");
  assert.deepEqual((await blocklistSince(env.db, 0)).added, ["3158642907"]);
  assert.equal((await findCardByChip(env.db, "4000000009"))!.chipStatus, "active");
  await staffReportLoss(env.db, { staffId }, id);
  await rejects(staffReportLoss(env.db, { staffId }, id), /已挂失/);
  assert.deepEqual((await blocklistSince(env.db, 0)).added.sort(), ["3158642907", "4000000009"]);
  await staffLiftLoss(env.db, { staffId }, id);
  assert.deepEqual((await blocklistSince(env.db, 0)).added, ["3158642907"]);
  const audit = await listAudit(env.db, { targetType: "card_account" });
  assert.deepEqual(audit.map((a) => a.action), [
    "card.loss_lifted",
    "card.loss_reported",
    "card.reissued",
  ]);
  assert.equal((audit[1].after as { status: string }).status, "loss_reported");
});

Deno.test("blocklistSince pages through the log with a limit and reports when it is complete", async () => {
  await using env = await cardWorld();
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  const id = env.zhang.cardAccountId;
  for (let i = 1; i <= 3; i++) await reissueCard(env.db, { staffId }, id, `500000000${i}`);
  const first = await blocklistSince(env.db, 0, 2);
  assert.deepEqual(first, {
    version: 2,
    added: ["3158642907", "5000000001"],
    removed: [],
    complete: false,
  });
  const second = await blocklistSince(env.db, first.version, 2);
  assert.deepEqual(second, { version: 3, added: ["5000000002"], removed: [], complete: true });
  assert.deepEqual(await blocklistSince(env.db, 3), {
    version: 3,
    added: [],
    removed: [],
    complete: true,
  });
  // A version from another database's future starts over.
  assert.equal((await blocklistSince(env.db, 999)).added.length, 3);
});

Deno.test("seedDemoCards creates the demo cardholders once and binds 张三 to the demo login account", async () => {
  await using env = await cardWorld();
  const { seedDemoCards, DEMO_CARDHOLDERS } = await import("./mod.ts");
  const demo = await makeAccount(env.db, env.school.id, "13800000001");
  // The setup already made 2024010001; start from an empty card table for this test.
  await env.db.deleteFrom("card_events").execute();
  await env.db.deleteFrom("card_chips").execute();
  await env.db.deleteFrom("card_accounts").execute();
  assert.equal(await seedDemoCards(env.db, env.deps), DEMO_CARDHOLDERS.length);
  assert.equal(await seedDemoCards(env.db, env.deps), 0);
  const bound = (await findBoundCard(env.db, demo))!;
  assert.equal(bound.studentNumber, "2024010001");
  assert.equal(bound.activeChipNumber, "3158642907");
  // README: the default card password of 张三 is 15123X.
  assert.deepEqual(await checkCardPassword(env.db, env.deps, bound.cardAccountId, "15123X"), {
    ok: true,
  });
  const li = (await findCardByChip(env.db, "3158642908"))!;
  assert.deepEqual(await checkCardPassword(env.db, env.deps, li.cardAccountId, "204526"), {
    ok: true,
  });
});

Deno.test("concurrent blocklist changes get consecutive versions and every chip is in the log", async () => {
  await using env = await cardWorld();
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  const ids: number[] = [];
  for (let i = 0; i < 8; i++) {
    const first17 = `5301022005011${i}00${i}`;
    const { idCheckChar } = await import("./rules.ts");
    ids.push(
      (await createCardAccountForTest(env.db, env.deps, {
        studentNumber: `20250100${i}0`,
        idNumber: first17 + idCheckChar(first17),
        chipNumber: `600000000${i}`,
      })).cardAccountId,
    );
  }
  const seen: number[] = [];
  const stop = onBlocklistChange((v) => seen.push(v));
  await Promise.all(ids.map((id) => staffReportLoss(env.db, { staffId }, id)));
  stop();
  const log = await env.db.selectFrom("card_blocklist_changes").select(["version", "chip_number"])
    .orderBy("version")
    .execute();
  assert.deepEqual(log.map((l) => Number(l.version)), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(new Set(log.map((l) => l.chip_number)).size, 8);
  assert.deepEqual(seen.sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("cards closed at the same moment each blocklist their chip once, at consecutive versions, and readers are told each", async () => {
  await using env = await cardWorld();
  const staffId = await createStaff(env.db, {
    username: "clerk",
    name: "c",
    password: "Clerk12345",
    roles: [ROLES.cardOffice],
  });
  const { idCheckChar } = await import("./rules.ts");
  const ids: number[] = [];
  for (let i = 0; i < 8; i++) {
    const first17 = `5301022005021${i}00${i}`;
    ids.push(
      (await createCardAccountForTest(env.db, env.deps, {
        studentNumber: `20250200${i}0`,
        idNumber: first17 + idCheckChar(first17),
        chipNumber: `610000000${i}`,
      })).cardAccountId,
    );
  }
  // One card lost first: its chip is listed already and is not listed again when it closes.
  await staffReportLoss(env.db, { staffId }, ids[0]);
  const seen: number[] = [];
  const stop = onBlocklistChange((v) => seen.push(v));
  await Promise.all(
    ids.map((id) => closeCardAccount(env.db, { staffId }, id, "毕业", () => Promise.resolve(0))),
  );
  stop();
  const log = await env.db.selectFrom("card_blocklist_changes")
    .select(["version", "chip_number", "op"]).orderBy("version").execute();
  assert.deepEqual(log.map((l) => Number(l.version)), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(
    log.map((l) => l.chip_number).sort(),
    Array.from({ length: 8 }, (_, i) => `610000000${i}`),
  );
  assert.ok(log.every((l) => l.op === "add"));
  assert.deepEqual(seen.sort((a, b) => a - b), [2, 3, 4, 5, 6, 7, 8]);
  assert.equal(await currentBlocklistVersion(env.db), 8);
  const delta = await blocklistSince(env.db, 1);
  assert.equal(delta.added.length, 7);
  assert.equal(delta.complete, true);
});

Deno.test("a blocklist change of more chips than one statement takes is logged whole, at consecutive versions", async () => {
  await using env = await cardWorld();
  const { recordBlocklistChanges } = await import("./blocklist.ts");
  const chips = Array.from({ length: 2_345 }, (_, i) => `7${String(i).padStart(9, "0")}`);
  await env.db.transaction().execute((trx) =>
    recordBlocklistChanges(trx, [{ chipNumber: "6999999999", op: "add" }])
  );
  const version = await env.db.transaction().execute((trx) =>
    recordBlocklistChanges(trx, chips.map((chipNumber) => ({ chipNumber, op: "add" as const })))
  );
  assert.equal(version, 1 + chips.length);
  assert.equal(await currentBlocklistVersion(env.db), version);
  const log = await env.db.selectFrom("card_blocklist_changes").select(["version", "chip_number"])
    .where("version", ">", 1).orderBy("version").execute();
  assert.deepEqual(log.map((l) => Number(l.version)), chips.map((_, i) => i + 2));
  assert.deepEqual(log.map((l) => l.chip_number), chips);
  const delta = await blocklistSince(env.db, 1, 100_000);
  assert.equal(delta.added.length, chips.length);
  assert.equal(delta.complete, true);
});

Deno.test("the card module's keyed hashes equal security's keyedHash, so stored hashes stay valid", async () => {
  const { keyedHash } = await import("../security/mod.ts");
  const { idNumberHash, defaultPasswordCheck } = await import("./passwords.ts");
  const { testConfig } = await import("../platform/testing.ts");
  const config = testConfig();
  for (const id of [IDS.zhang, IDS.li, "身份证"]) {
    const h = await idNumberHash({ config }, id);
    assert.equal(h, await keyedHash(config.appSecret, "id-number", id));
    assert.equal(
      await defaultPasswordCheck({ config }, h, "15123X"),
      await keyedHash(config.cardPepper, "card-default-password", `${h}\n15123X`),
    );
  }
});

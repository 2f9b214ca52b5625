import assert from "node:assert/strict";
import { readXlsx } from "../platform/sheets.ts";
import { TestClient } from "../platform/testing.ts";
import { createMerchant, setSettlementTerms } from "../merchant/mod.ts";
import { payFromCard } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import {
  makeStaff,
  makeStudent,
  routesOf,
  setupApp,
  signInStaffSettingPassword,
  type TestWorld,
} from "../testkit/mod.ts";
import { prepareStatements } from "./mod.ts";

const DAY = 86_400_000;

/** An outsourced window settled daily at 5%, paid `amounts` today by a student. */
async function windowWithTakings(w: TestWorld, name: string, amounts: number[]) {
  const merchant = await createMerchant(w.db, {
    code: `W${crypto.randomUUID().slice(0, 6)}`,
    name,
    category: "canteen",
  });
  await setSettlementTerms(w.db, { staffId: null }, {
    merchantId: merchant.id,
    settles: true,
    period: "daily",
    feeRateBp: 500,
    payeeName: "某餐饮公司",
    payeeBank: "某银行",
    payeeAccount: "6228 0000 0000",
  });
  const student = await makeStudent(w, { balance: 500_00 });
  for (const [i, amount] of amounts.entries()) {
    await payFromCard(w.db, {
      cardAccountId: student.cardAccountId,
      merchantId: merchant.id,
      amount,
      reference: `pos-${merchant.id}-${i}`,
    });
  }
  return merchant;
}

/** Today's period of every settled window prepared (as if tomorrow), by `maker`. */
async function prepareToday(w: TestWorld, makerId: number): Promise<void> {
  await prepareStatements(w.db, { staffId: makerId, ip: null }, {
    merchantId: "all",
    now: new Date(Date.now() + DAY),
  });
}

async function statementOf(w: TestWorld, merchantId: number): Promise<number> {
  const s = await w.db.selectFrom("settlement_statements").select("id")
    .where("merchant_id", "=", merchantId).executeTakeFirstOrThrow();
  return s.id;
}

Deno.test("a merchant operator opened on its merchant's page reads its approved statements and today's takings, and nothing else", async () => {
  await using w = await setupApp();
  const ours = await windowWithTakings(w, "二食堂外包窗口", [12_00, 8_50]);
  const theirs = await windowWithTakings(w, "超市外包", [30_00]);
  const maker = await makeStaff(w, "maker1", [ROLES.finance]);
  const checker = await makeStaff(w, "checker1", [ROLES.finance]);
  const sys = await makeStaff(w, "sys1", [ROLES.sysadmin]);
  await prepareToday(w, maker.id);
  const ourStatement = await statementOf(w, ours.id);
  const theirStatement = await statementOf(w, theirs.id);
  for (const id of [ourStatement, theirStatement]) {
    const ok = await checker.client.post(`/admin/finance/settlements/${id}/approve`, {});
    assert.equal(ok.status, 303);
  }
  const paid = await maker.client.post(`/admin/finance/settlements/${ourStatement}/pay`, {
    bank_reference: "BOC20261207001",
  });
  assert.equal(paid.status, 303);

  // The system administrator opens the sign-in on the merchant's page; bad input changes nothing.
  const weak = await sys.client.post(`/admin/merchants/${ours.id}/operators`, {
    username: "wang.laoban",
    name: "王老板",
    password: "123",
  });
  assert.equal(weak.status, 422);
  const weakPage = await weak.text();
  assert.match(weakPage, /id="op-password-error"/);
  assert.match(weakPage, /value="wang.laoban"/);
  assert.doesNotMatch(weakPage, /value="123"/);
  const taken = await sys.client.post(`/admin/merchants/${ours.id}/operators`, {
    username: "maker1",
    name: "王老板",
    password: "Start12345",
  });
  assert.equal(taken.status, 422);
  assert.match(await taken.text(), /该用户名已存在/);
  assert.equal(
    (await w.db.selectFrom("merchant_operators").select("staff_id").execute()).length,
    0,
  );
  const made = await sys.client.post(`/admin/merchants/${ours.id}/operators`, {
    username: "wang.laoban",
    name: "王老板",
    password: "Start12345",
  });
  assert.equal(made.status, 303);
  assert.match(
    await sys.client.page(made.headers.get("location")!),
    /已开设经营者账号[\s\S]*wang\.laoban[\s\S]*王老板/,
  );
  // 员工账号 never gives the role: it comes only with a merchant.
  const forged = await sys.client.post("/admin/staff", {
    username: "nobody",
    name: "无商户",
    password: "Start12345",
    roles: "merchant_operator",
  });
  assert.equal(forged.status, 422);

  const op = new TestClient(w.app, w.config, "10.9.77.1");
  await signInStaffSettingPassword(op, { username: "wang.laoban", password: "Start12345" });
  const home = await op.page("/admin");
  assert.match(home, /商户经营者/);
  assert.match(home, /href="\/admin\/my-merchant"/);
  assert.doesNotMatch(home, /admin-search/);
  // Its sidebar is its merchant's page alone, under 商户.
  assert.deepEqual(
    [...home.matchAll(/<h2 class="admin-side__group"[^>]*>([^<]+)<\/h2>/g)].map((m) => m[1]),
    ["商户"],
  );
  assert.deepEqual(
    [...home.matchAll(/<nav class="admin-side"[\s\S]*?<\/nav>/g)][0][0].match(/href="[^"]+"/g),
    ['href="/admin/my-merchant"'],
  );

  const page = await op.page("/admin/my-merchant");
  assert.match(page, /二食堂外包窗口 · 结算/);
  // Today: two payments, ¥20.50; the school still owes it nothing of them (paid today, fee 5%).
  assert.match(page, /id="today-amount">¥20\.50</);
  assert.match(page, /id="today-count">2</);
  assert.match(page, /id="portal-owed">¥0\.00</);
  assert.match(
    page,
    new RegExp(`#${ourStatement}[\\s\\S]*¥19\\.47[\\s\\S]*已付款[\\s\\S]*BOC20261207001`),
  );
  assert.doesNotMatch(page, new RegExp(`#${theirStatement}\\b`));
  assert.doesNotMatch(page, /超市外包/);
  // An old link past the last page shows the last page, not an empty list.
  assert.match(
    await op.page("/admin/my-merchant?page=5"),
    new RegExp(`#${ourStatement}[\\s\\S]*¥19\\.47`),
  );

  const print = await op.page(`/admin/my-merchant/statement?id=${ourStatement}`);
  assert.match(print, /商户结算单[\s\S]*二食堂外包窗口[\s\S]*¥19\.47[\s\S]*BOC20261207001/);
  for (const id of [String(theirStatement), "abc", "0"]) {
    const other = await op.get(`/admin/my-merchant/statement?id=${id}`);
    await other.body?.cancel();
    assert.equal(other.status, 404, `statement ${id}`);
  }
  // Its lines, to match against the window's own till.
  const lines = await op.get(`/admin/my-merchant/statement?id=${ourStatement}&export=xlsx`);
  const sheet = await readXlsx(new Uint8Array(await lines.arrayBuffer()));
  assert.deepEqual(sheet.map((r) => r.cells[4]), ["金额", "12", "8.5"]);
  const theirLines = await op.get(`/admin/my-merchant/statement?id=${theirStatement}&export=csv`);
  await theirLines.body?.cancel();
  assert.equal(theirLines.status, 404);
  const xlsx = await op.get("/admin/my-merchant?export=xlsx");
  const rows = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.deepEqual(rows.map((r) => [r.cells[0], r.cells[1]]), [
    ["结算单号", "商户"],
    [String(ourStatement), "二食堂外包窗口"],
  ]);

  // Finance's pages, the cards and the audit log stay closed to it.
  for (const path of ["/admin/finance/settlements", "/admin/cards", "/admin/audit"]) {
    const res = await op.get(path);
    await res.body?.cancel();
    assert.equal(res.status, 403, path);
  }
  const pay = await op.post(`/admin/finance/settlements/${theirStatement}/pay`, {
    bank_reference: "X",
  });
  await pay.body?.cancel();
  assert.equal(pay.status, 403);
});

Deno.test("a statement waiting for its second finance member is not shown to the merchant's operator", async () => {
  await using w = await setupApp();
  const ours = await windowWithTakings(w, "外包窗口", [10_00]);
  const maker = await makeStaff(w, "maker1", [ROLES.finance]);
  const sys = await makeStaff(w, "sys1", [ROLES.sysadmin]);
  await prepareToday(w, maker.id);
  const id = await statementOf(w, ours.id);
  const made = await sys.client.post(`/admin/merchants/${ours.id}/operators`, {
    username: "op1",
    name: "经营者",
    password: "Start12345",
  });
  assert.equal(made.status, 303);
  const op = new TestClient(w.app, w.config, "10.9.78.1");
  await signInStaffSettingPassword(op, { username: "op1", password: "Start12345" });
  const page = await op.page("/admin/my-merchant");
  assert.match(page, /暂无已复核的结算单/);
  // What it took today is owed, not yet in a paid statement.
  assert.match(page, /id="portal-owed">¥10\.00</);
  const draft = await op.get(`/admin/my-merchant/statement?id=${id}`);
  await draft.body?.cancel();
  assert.equal(draft.status, 404);
});

Deno.test("a merchant operator is refused every other console route, GET and POST", async () => {
  await using w = await setupApp();
  const ours = await windowWithTakings(w, "外包窗口", [10_00]);
  const sys = await makeStaff(w, "sys1", [ROLES.sysadmin]);
  const made = await sys.client.post(`/admin/merchants/${ours.id}/operators`, {
    username: "op1",
    name: "经营者",
    password: "Start12345",
  });
  assert.equal(made.status, 303);
  const op = new TestClient(w.app, w.config, "10.9.79.1");
  await signInStaffSettingPassword(op, { username: "op1", password: "Start12345" });
  const its = /^\/admin(\/?|\/password|\/login|\/logout|\/my-merchant(\/statement)?)$/;
  const others = routesOf(w.app).filter((r) => r.path.startsWith("/admin") && !its.test(r.path));
  assert.ok(others.length > 50, `console routes (${others.length})`);
  const answered: string[] = [];
  for (const r of others) {
    const path = r.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "1");
    const res = r.method === "GET" ? await op.get(path) : await op.post(path, {});
    await res.body?.cancel();
    if (res.status !== 403) answered.push(`${r.method} ${r.path}: ${res.status}`);
  }
  assert.deepEqual(answered, []);
  assert.equal((await op.get("/admin/my-merchant")).status, 200);
});

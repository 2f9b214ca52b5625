import assert from "node:assert/strict";
import { parseCsv } from "../platform/csv.ts";
import { readXlsx } from "../platform/sheets.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";

Deno.test("充值订单 filters by 学号, state and day, pages, counts and exports with each holder", async () => {
  await using w = await setupApp();
  const a = await makeStudent(w, { name: "王五" });
  const b = await makeStudent(w);
  const day = (d: string) => new Date(`${d}T09:00:00+08:00`);
  for (let i = 1; i <= 70; i++) {
    const s = i <= 60 ? a : b;
    await w.db.insertInto("topup_orders").values({
      order_no: `YXT2026${String(i).padStart(10, "0")}`,
      account_id: s.accountId,
      card_account_id: s.cardAccountId,
      amount: 1000 + i,
      method: "sandbox",
      state: i % 3 === 0 ? "closed" : "paid",
      paid_at: i % 3 === 0 ? null : day("2026-06-02"),
      gateway_txn_id: i % 3 === 0 ? null : `SBX${i}`,
      expires_at: day("2026-06-03"),
      created_at: day(i <= 30 ? "2026-06-01" : "2026-06-02"),
    }).execute();
  }
  const { student_number } = await w.db.selectFrom("card_accounts").select("student_number")
    .where("id", "=", a.cardAccountId).executeTakeFirstOrThrow();
  const fin = await makeStaff(w, "fin", [ROLES.finance]);
  const all = await fin.client.page("/admin/finance/orders");
  assert.match(all, /共 <strong>70<\/strong> 条，第 1–50 条/);
  const theirs = await fin.client.page(`/admin/finance/orders?q=${student_number}`);
  assert.match(theirs, /共 <strong>60<\/strong> 条/);
  assert.match(theirs, /王五/);
  const closedOnDay = await fin.client.page(
    `/admin/finance/orders?q=${student_number}&state=closed&from=2026-06-02&to=2026-06-02`,
  );
  assert.match(closedOnDay, /共 <strong>10<\/strong> 条/);
  assert.match(await fin.client.page("/admin/finance/orders?q=2099000000"), /没有找到充值订单/);

  const csv = parseCsv(
    await (await fin.client.get(`/admin/finance/orders?q=${student_number}&state=paid&export=csv`))
      .text(),
  );
  assert.equal(csv.length, 41);
  assert.deepEqual(csv[0].slice(0, 5), ["商户订单号", "学号", "姓名", "渠道", "金额(元)"]);
  assert.deepEqual(csv[1].slice(1, 6), [student_number, "王五", "测试支付", "10.59", "已支付"]);
  const xlsx = await fin.client.get("/admin/finance/orders?export=xlsx");
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.equal(sheet.length, 71);
  assert.equal(sheet[1].cells[4], "10.7");
});

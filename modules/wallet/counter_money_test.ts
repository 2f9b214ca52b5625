import assert from "node:assert/strict";
import { createMerchant } from "../merchant/mod.ts";
import { readXlsx } from "../platform/sheets.ts";
import { parseCsv } from "../platform/csv.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { holdFunds, payFromCard } from "./mod.ts";

async function paidStudent(w: Awaited<ReturnType<typeof setupApp>>, payments: number) {
  const s = await makeStudent(w, { balance: 100_000 });
  const merchant = await createMerchant(w.db, {
    code: "CANTEEN9",
    name: "一食堂",
    category: "canteen",
  });
  for (let i = 1; i <= payments; i++) {
    await payFromCard(w.db, {
      cardAccountId: s.cardAccountId,
      merchantId: merchant.id,
      amount: 100 + i,
      reference: `cm-${s.cardAccountId}-${i}`,
    });
  }
  return { ...s, merchant };
}

Deno.test("the counter screen's money panel: balance, held, available, the last 10 transactions", async () => {
  await using w = await setupApp();
  const s = await paidStudent(w, 12);
  const shower = await createMerchant(w.db, {
    code: "SHOWER9",
    name: "三号浴室",
    category: "shower",
  });
  await holdFunds(w.db, {
    cardAccountId: s.cardAccountId,
    amount: 500,
    merchantId: shower.id,
    reference: `cm-hold-${s.cardAccountId}`,
    expiresAt: new Date(Date.now() + 600_000),
  });
  const office = await makeStaff(w, "office", [ROLES.cardOffice]);
  const page = await office.client.page(`/admin/cards/${s.cardAccountId}`);
  assert.match(
    page,
    new RegExp(`hx-get="/admin/cards/${s.cardAccountId}/money" hx-trigger="load"`),
  );

  const panel = await office.client.page(`/admin/cards/${s.cardAccountId}/money`, {
    "hx-request": "true",
  });
  // 1000.00 topped up, 12 payments of 1.01 … 1.12 (12.78 in all).
  assert.match(panel, /id="card-balance">¥987\.22</);
  assert.match(panel, /id="card-held">¥5\.00</);
  assert.match(panel, /id="card-available">¥982\.22</);
  assert.match(panel, /三号浴室 ¥5\.00/);
  const rows = [...panel.matchAll(/<tr><td>/g)];
  assert.equal(rows.length, 10);
  assert.match(panel, /-1\.12/, "the newest first");
  assert.doesNotMatch(panel, /-1\.02</, "the 11th newest is not among the last 10");
  assert.match(
    panel,
    new RegExp(`href="/admin/cards/${s.cardAccountId}/transactions">全部交易记录`),
  );
});

Deno.test("a card's money is the card office's, finance's and the administrator's to see, not 图文信息中心's", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w, { balance: 500 });
  const info = await makeStaff(w, "info", [ROLES.infoCentre]);
  assert.doesNotMatch(await info.client.page(`/admin/cards/${s.cardAccountId}`), /card-money/);
  for (const path of ["money", "transactions", "transactions?export=csv"]) {
    assert.equal((await info.client.get(`/admin/cards/${s.cardAccountId}/${path}`)).status, 403);
  }
  const finance = await makeStaff(w, "fin", [ROLES.finance]);
  assert.match(await finance.client.page(`/admin/cards/${s.cardAccountId}/money`), /¥5\.00/);
  assert.equal((await finance.client.get(`/admin/cards/999999/money`)).status, 404);
});

Deno.test("全部交易记录 pages past its first screen, counts, filters, and exports CSV and Excel", async () => {
  await using w = await setupApp();
  const s = await paidStudent(w, 60);
  const office = await makeStaff(w, "office", [ROLES.cardOffice]);
  const base = `/admin/cards/${s.cardAccountId}/transactions`;
  const first = await office.client.page(base);
  assert.match(first, /共 <strong>61<\/strong> 条，第 1–50 条/);
  assert.match(first, new RegExp(`href="${base}\\?page=2" rel="next">下一页`));
  const second = await office.client.page(`${base}?page=2`);
  assert.match(second, /第 51–61 条/);
  assert.match(second, /充值/);
  // A page past the end shows the last one; a bad value the first.
  assert.match(await office.client.page(`${base}?page=99`), /第 51–61 条/);
  assert.match(await office.client.page(`${base}?page=x&kind=nonsense`), /第 1–50 条/);

  const purchases = await office.client.page(`${base}?kind=purchase`);
  assert.match(purchases, /共 <strong>60<\/strong> 条/);
  const future = await office.client.page(`${base}?from=2099-01-01`);
  assert.match(future, /没有符合条件的交易/);
  assert.match(purchases, new RegExp(`href="${base}\\?kind=purchase&amp;export=xlsx"`));

  const csv = await office.client.get(`${base}?kind=purchase&export=csv`);
  assert.equal(csv.status, 200);
  assert.match(
    csv.headers.get("content-disposition")!,
    /attachment; filename="export\.csv"; filename\*=UTF-8''/,
  );
  const table = parseCsv(await csv.text());
  assert.deepEqual(table[0], ["流水号", "时间", "类型", "商户", "金额(元)", "余额(元)"]);
  assert.equal(table.length, 61);
  assert.deepEqual(table[1].slice(2, 5), ["消费", "一食堂", "-1.60"]);

  const xlsx = await office.client.get(`${base}?export=xlsx`);
  assert.equal(
    xlsx.headers.get("content-type"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  );
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.equal(sheet.length, 62);
  assert.deepEqual(sheet[1].cells.slice(2, 5), ["消费", "一食堂", "-1.6"]);
  assert.equal(sheet[61].cells[2], "充值");
});

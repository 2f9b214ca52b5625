import assert from "node:assert/strict";
import bwipjs from "bwip-js";
import { createMerchant } from "../merchant/mod.ts";
import { setup } from "./_test_support.ts";
import { creditTopUp, payFromCard, payUtility, refundTransfer } from "./mod.ts";
import { chinaMonth } from "../platform/china_time.ts";
import { categoryOf, monthTotals, topupOf } from "./history.ts";
import { spendingStats } from "./stats.ts";
import { barChartSvg } from "./chart.ts";
import { barcodeSvg, maskDigits } from "./qr.ts";

/** Moves a transfer to a given time (tests only: history reads created_at). */
async function at(t: Awaited<ReturnType<typeof setup>>, transferId: number, iso: string) {
  await t.db.updateTable("ledger_transfers").set({ created_at: new Date(iso) })
    .where("id", "=", transferId).execute();
}

Deno.test("months are China months: 2026-11-30 17:00 UTC is already December", () => {
  assert.equal(chinaMonth(new Date("2026-11-30T15:59:59Z")), "2026-11");
  assert.equal(chinaMonth(new Date("2026-11-30T16:00:00Z")), "2026-12");
});

Deno.test("交易记录's month totals: 支出 and 收入 per China month, under the type filter", async () => {
  const t = await setup();
  try {
    const card = await t.card(0);
    const top = await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 50_000,
      method: "sandbox",
      reference: "stats-top",
    });
    await at(t, top.transferId, "2026-11-10T04:00:00Z");
    const lunch = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 850,
      reference: "stats-lunch",
    });
    await at(t, lunch.transferId, "2026-11-30T15:59:00Z"); // 23:59 China, November
    const dinner = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 1_200,
      reference: "stats-dinner",
    });
    await at(t, dinner.transferId, "2026-11-30T16:01:00Z"); // 00:01 China, December
    const power = await payUtility(t.db, {
      cardAccountId: card,
      amount: 2_000,
      utility: "electricity",
      reference: "stats-power",
    });
    await at(t, power.transferId, "2026-12-02T02:00:00Z");

    const all = await monthTotals(t.db, card, ["2026-11", "2026-12"]);
    assert.deepEqual(all.get("2026-11"), { spent: 850, received: 50_000 });
    assert.deepEqual(all.get("2026-12"), { spent: 3_200, received: 0 });
    const purchases = await monthTotals(t.db, card, ["2026-12"], "purchase");
    assert.deepEqual(purchases.get("2026-12"), { spent: 1_200, received: 0 });
    assert.equal((await monthTotals(t.db, card, [])).size, 0);
  } finally {
    await t.h.close();
  }
});

Deno.test("消费统计: spending per month net of refunds, and the month by category", async () => {
  const t = await setup();
  try {
    const shop = await createMerchant(t.db, {
      code: "SHOP-STATS",
      name: "校园超市",
      category: "supermarket",
    });
    const card = await t.card(100_000);
    const pay = async (merchantId: number, amount: number, ref: string, iso: string) => {
      const r = await payFromCard(t.db, {
        cardAccountId: card,
        merchantId,
        amount,
        reference: ref,
      });
      await at(t, r.transferId, iso);
      return r.transferId;
    };
    await pay(t.merchant.id, 1_000, "s1", "2026-10-15T04:00:00Z");
    const meal = await pay(t.merchant.id, 2_000, "s2", "2026-12-01T04:00:00Z");
    await pay(shop.id, 500, "s3", "2026-12-02T04:00:00Z");
    const water = await payUtility(t.db, {
      cardAccountId: card,
      amount: 300,
      utility: "water",
      reference: "s4",
    });
    await at(t, water.transferId, "2026-12-03T04:00:00Z");
    const refund = await refundTransfer(t.db, {
      transferId: meal,
      amount: 400,
      reference: "s5",
      reason: "多扣",
      staffId: null,
    });
    await at(t, refund.transferId, "2026-12-04T04:00:00Z");

    const stats = await spendingStats(t.db, card, { month: "2026-12", months: 3 });
    assert.deepEqual(stats.byMonth, [
      { month: "2026-10", amount: 1_000 },
      { month: "2026-11", amount: 0 },
      { month: "2026-12", amount: 2_400 },
    ]);
    assert.deepEqual(
      stats.byCategory.map((l) => [l.category.label, l.amount]),
      [["食堂", 2_000], ["超市", 500], ["冷水", 300], ["退款", -400]],
    );
    assert.equal(stats.total, 2_400);
    // The top-up that seeded the card is no spending.
    const empty = await spendingStats(t.db, card, { month: "2026-11", months: 1 });
    assert.deepEqual(empty.byCategory, []);
    assert.equal(empty.total, 0);
  } finally {
    await t.h.close();
  }
});

Deno.test("categories and a top-up's channel and order number", () => {
  assert.equal(categoryOf("purchase", "canteen").label, "食堂");
  assert.equal(categoryOf("purchase", "supermarket").label, "超市");
  assert.equal(categoryOf("purchase", null).label, "其他");
  assert.equal(categoryOf("shower", null).label, "淋浴");
  assert.equal(categoryOf("utility_refund", null).label, "退款");
  assert.equal(categoryOf("topup", null).label, "充值");
  const base = {
    id: 1,
    channel: null,
    amount: 100,
    cardDelta: 100,
    balanceAfter: 100,
    merchantName: null,
    merchantCategory: null,
    terminalId: null,
    createdAt: new Date(),
  };
  assert.deepEqual(
    topupOf({
      ...base,
      kind: "topup",
      details: { method: "wechat", info: { orderNo: "YXT2026120300001" } },
    }),
    { channel: "微信支付", orderNo: "YXT2026120300001" },
  );
  assert.equal(topupOf({ ...base, kind: "purchase", details: { method: "wechat" } }), null);
  assert.equal(topupOf({ ...base, kind: "topup", details: null }), null);
});

/** The bar and space widths an SVG from barcodeSvg draws, left to right (scale 1: modules). */
function widthsOf(svg: string): number[] {
  const bars = [...svg.matchAll(/M(\d+) 2h(\d+)v41h-\2z/g)].map((
    m,
  ) => [Number(m[1]), Number(m[2])]);
  bars.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  bars.forEach(([left, w], i) => {
    if (i > 0) out.push(left - (bars[i - 1][0] + bars[i - 1][1]));
    out.push(w);
  });
  return out;
}

Deno.test("付款码: the barcode is Code128 (set C) of the very code, and the digits are masked", () => {
  const code = "881234567890123452";
  const svg = barcodeSvg(code);
  const widths = widthsOf(svg);
  // deno-lint-ignore no-explicit-any
  const raw = (bwipjs as any).raw({ bcid: "code128", text: code })[0].sbs as number[];
  assert.deepEqual(widths, raw, "the SVG draws the library's encoding of this code");
  assert.deepEqual(widths.slice(0, 6), [2, 1, 1, 2, 3, 2], "Start C: digits in pairs");
  assert.deepEqual(widths.slice(-7), [2, 3, 3, 1, 1, 1, 2], "Stop");
  // Start, 9 pairs of digits, the check symbol: 11 modules each; the stop 13.
  assert.equal(widths.reduce((a, b) => a + b, 0), 11 * 11 + 13);
  assert.notDeepEqual(widthsOf(barcodeSvg("881234567890123460")), widths);
  assert.match(svg, /^<svg class="paycode__bar"[^>]*aria-hidden="true"/);
  assert.match(svg, /fill="#FFFFFF"/, "on white, in dark mode too");
  assert.doesNotMatch(svg, /style=/, "no inline style (CSP)");
  assert.throws(() => barcodeSvg("88<script>"));
  assert.equal(maskDigits(code), "8812 ******");
});

Deno.test("the chart is a picture of its table: no text from outside unescaped", () => {
  const svg = barChartSvg([
    { label: "<b>", value: 100 },
    { label: "12月", value: 0, highlight: true },
  ]);
  assert.match(svg, /aria-hidden="true"/);
  assert.ok(!svg.includes("<b>"));
  assert.match(svg, /1\.00/);
});

Deno.test("the pages: 账单 month headers, 消费统计 chart and table, 充值 detail, 付款码 source", async () => {
  const t = await setup();
  try {
    const s = await t.student(0);
    const top = await creditTopUp(t.db, {
      cardAccountId: s.cardAccountId,
      amount: 21_500,
      method: "sandbox",
      reference: "topup:YXT2026120300042",
      details: { orderNo: "YXT2026120300042", txnId: "SBX1" },
    });
    const meal = await payFromCard(t.db, {
      cardAccountId: s.cardAccountId,
      merchantId: t.merchant.id,
      amount: 800,
      reference: "page-meal",
    });
    const month = chinaMonth(new Date());
    const [y, m] = [month.slice(0, 4), Number(month.slice(5))];

    const list = await s.client.page("/wallet/transactions");
    assert.match(list, new RegExp(`<h2 class="tx-month__title">${y}年${m}月</h2>`));
    assert.match(list, /支出 ¥8\.00 · 收入 ¥215\.00/);
    assert.match(list, /tx__icon--canteen" aria-hidden="true">食/);
    assert.match(list, /tx__icon--topup" aria-hidden="true">充/);
    assert.match(list, /type="month" name="month"/);
    assert.doesNotMatch(list, /<select/, "a month picker, not the old select");

    const stats = await s.client.page("/wallet/stats");
    assert.match(stats, /<h1 class="page__title">消费统计<\/h1>/);
    assert.match(stats, /<svg[^>]*class="chart" aria-hidden="true"/);
    assert.match(stats, new RegExp(`${y}年${m}月</a></th><td>¥8\\.00</td>`));
    assert.match(stats, /食堂<\/th><td>¥8\.00<\/td><td>.*100%/);
    const bad = await s.client.get("/wallet/stats?month=2026-13");
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /月份格式不正确/);

    const detail = await s.client.page(`/wallet/transactions/${top.transferId}`);
    assert.match(detail, /支付渠道<\/span><span class="cell__ft">测试支付（沙箱）/);
    assert.match(detail, /订单号<\/span><span class="cell__ft">YXT2026120300042/);
    assert.doesNotMatch(detail, />商户</);
    const mealDetail = await s.client.page(`/wallet/transactions/${meal.transferId}`);
    assert.match(mealDetail, /商户<\/span><span class="cell__ft">第一食堂/);

    const code = await s.client.page("/pay/code");
    assert.match(code, /一卡通余额 ¥207\.00 · /);
    assert.match(code, /role="img" aria-label="付款条形码"><svg class="paycode__bar"/);
    assert.match(code, /请调高屏幕亮度/);
    assert.match(code, /查看数字/);
  } finally {
    await t.h.close();
  }
});

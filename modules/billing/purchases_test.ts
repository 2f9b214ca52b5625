import assert from "node:assert/strict";
import { getBalance } from "../wallet/mod.ts";
import { makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { assertLedgerBalanced, countingMoney, makeRooms } from "./_testing.ts";
import { runDueJobs } from "./delivery.ts";
import { SimulatedMeter } from "./meters.ts";
import {
  describeUtilityTransfers,
  findPurchaseByOrderNo,
  LIMITS,
  purchaseUtility,
} from "./purchases.ts";
import { walletMoney } from "./wallet_link.ts";

function payForm(page: string): string {
  const m = /name="token" value="([^"]+)"/.exec(page);
  assert.ok(m, "the form carries a one-time token");
  return m[1];
}

async function studentInRoom(w: TestWorld, roomId: number, balance = 100_00, name?: string) {
  const s = await makeStudent(w, { balance, name });
  const page = await s.client.page(`/billing/room`);
  assert.match(page, /选择宿舍/);
  const res = await s.client.post("/billing/room", {
    room: String(roomId),
    next: "/billing/electricity",
  });
  assert.equal(res.status, 303, await res.text());
  assert.equal(res.headers.get("location"), "/billing/electricity");
  return s;
}

function deliver(w: TestWorld, now?: () => Date) {
  return runDueJobs({ db: w.db, meter: new SimulatedMeter(w.db), money: walletMoney, now });
}

Deno.test("paying electricity takes the card balance, delivers to the meter, and shows the room's credit", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 100_00, "张三");
  const page = await s.client.page("/billing/electricity");
  assert.match(page, /电费充值/);
  assert.match(page, /1号楼 101/);
  assert.match(page, /暂无数据/);
  const res = await s.client.post("/billing/electricity", {
    token: await payForm(page),
    quick: "20",
  });
  assert.equal(res.status, 303, await res.text());
  const orderPath = res.headers.get("location")!;
  assert.match(orderPath, /^\/billing\/orders\/DF\d{20}$/);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 80_00);
  assert.match(await s.client.page(orderPath), /充值中/);

  assert.equal(await deliver(w), 1);
  const p = await findPurchaseByOrderNo(w.db, orderPath.split("/").pop()!);
  assert.equal(p?.status, "delivered");
  assert.match(await s.client.page(orderPath), /充值成功/);
  const after = await s.client.page("/billing/electricity");
  assert.match(after, /¥20\.00/);
  assert.match(after, /约 36\.3 度/);
  assert.match(after, /已到账/);

  const water = await s.client.page("/billing/water");
  assert.match(water, /冷水充值/);
  const wres = await s.client.post("/billing/water", {
    token: await payForm(water),
    amount: "7.5",
  });
  assert.equal(wres.status, 303);
  assert.match(wres.headers.get("location")!, /^\/billing\/orders\/SF\d{20}$/);
  await deliver(w);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 72_50);
  await assertLedgerBalanced(w.db);
});

Deno.test("submitting the same form twice pays once and shows the same order", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 50_00);
  const token = await payForm(await s.client.page("/billing/water"));
  const [a, b] = await Promise.all([
    s.client.post("/billing/water", { token, amount: "10" }),
    s.client.post("/billing/water", { token, amount: "10" }),
  ]);
  const again = await s.client.post("/billing/water", { token, amount: "10" });
  assert.deepEqual([a.status, b.status, again.status], [303, 303, 303]);
  assert.equal(a.headers.get("location"), b.headers.get("location"));
  assert.equal(a.headers.get("location"), again.headers.get("location"));
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 40_00);
  await assertLedgerBalanced(w.db);
});

Deno.test("two residents paying the same room at once both reach the meter", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const a = await studentInRoom(w, r101.id, 100_00, "张三");
  const b = await studentInRoom(w, r101.id, 100_00, "李四");
  const [ta, tb] = [
    await payForm(await a.client.page("/billing/electricity")),
    await payForm(await b.client.page("/billing/electricity")),
  ];
  const [ra, rb] = await Promise.all([
    a.client.post("/billing/electricity", { token: ta, amount: "30" }),
    b.client.post("/billing/electricity", { token: tb, amount: "45.5" }),
  ]);
  assert.equal(ra.status, 303);
  assert.equal(rb.status, 303);
  // Two workers share the jobs.
  await Promise.all([deliver(w), deliver(w)]);
  const meter = await w.db.selectFrom("billing_sim_meters").select("balance")
    .where("room_id", "=", r101.id).where("utility", "=", "electricity")
    .executeTakeFirstOrThrow();
  assert.equal(meter.balance, 75_50);
  const page = await a.client.page("/billing/electricity");
  assert.match(page, /¥75\.50/);
  assert.match(page, /李\*/, "the roommate's payment shows who paid");
  assert.match(page, />我</);
  assert.equal((await getBalance(w.db, a.cardAccountId!)).balance, 70_00);
  assert.equal((await getBalance(w.db, b.cardAccountId!)).balance, 54_50);
  await assertLedgerBalanced(w.db);
});

Deno.test("amounts outside the minimum, maximum and daily limits are refused without moving money", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 2_000_00);
  const post = async (amount: string) =>
    s.client.post("/billing/electricity", {
      token: await payForm(await s.client.page("/billing/electricity")),
      amount,
    });
  const low = await post("0.99");
  assert.equal(low.status, 422);
  assert.match(await low.text(), /单笔充值金额不能低于 ¥1\.00/);
  const high = await post(String(LIMITS.maxAmount / 100 + 1));
  assert.equal(high.status, 422);
  assert.match(await high.text(), /单笔充值金额不能超过 ¥500\.00/);
  assert.equal((await post("500")).status, 303);
  assert.equal((await post("500")).status, 303);
  const over = await post("1");
  assert.equal(over.status, 422);
  assert.match(await over.text(), /超过每日充值限额 ¥1000\.00，今日还可充值 ¥0\.00/);
  // The daily limit is per utility: water is still open.
  const water = await s.client.post("/billing/water", {
    token: await payForm(await s.client.page("/billing/water")),
    amount: "1",
  });
  assert.equal(water.status, 303);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 2_000_00 - 1_001_00);
});

Deno.test("racing forms cannot pass the daily limit together", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await makeStudent(w, { balance: 2_000_00 });
  await s.client.post("/billing/room", { room: String(r101.id) });
  const payer = { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "x" };
  const results = await Promise.allSettled(
    [1, 2, 3].map((i) =>
      purchaseUtility(w.db, walletMoney, {
        payer,
        utility: "water",
        amount: 400_00,
        token: `race-token-${i}-aaaaaaaaaa`,
      })
    ),
  );
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 2);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 1_200_00);
});

Deno.test("insufficient balance is refused with a link to 充值 and moves nothing", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 5_00);
  const money = countingMoney();
  const res = await s.client.post("/billing/electricity", {
    token: await payForm(await s.client.page("/billing/electricity")),
    amount: "20",
  });
  assert.equal(res.status, 422);
  const html = await res.text();
  assert.match(html, /一卡通余额不足/);
  assert.match(html, /href="\/wallet\/recharge"/);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 5_00);
  const row = await w.db.selectFrom("billing_purchases").select("status")
    .executeTakeFirstOrThrow();
  assert.equal(row.status, "declined");
  // The worker never delivers or refunds a declined purchase.
  assert.equal(
    await runDueJobs({
      db: w.db,
      meter: new SimulatedMeter(w.db),
      money,
      now: () => new Date(Date.now() + 3600_000),
    }),
    0,
  );
  assert.equal(money.pays + money.refunds, 0);
  await assertLedgerBalanced(w.db);
});

Deno.test("without a bound card or a room the pages say what to do first", async () => {
  await using w = await setupApp();
  await makeRooms(w.db);
  const unbound = await makeStudent(w, { bind: false });
  const page = await unbound.client.page("/billing/electricity");
  assert.match(page, /请先绑定一卡通账号/);
  assert.match(page, /href="\/security"/);
  const post = await unbound.client.post("/billing/electricity", {
    token: "a".repeat(32),
    amount: "10",
  });
  assert.equal(post.status, 409);

  const roomless = await makeStudent(w, { balance: 10_00 });
  const water = await roomless.client.page("/billing/water");
  assert.match(water, /请先选择宿舍房间/);
  assert.match(water, /href="\/billing\/room\?next=\/billing\/water"/);
  const p2 = await roomless.client.post("/billing/water", {
    token: "b".repeat(32),
    amount: "10",
  });
  assert.equal(p2.status, 409);
  assert.equal((await getBalance(w.db, roomless.cardAccountId!)).balance, 10_00);

  const anon = await w.client().get("/billing/electricity");
  assert.equal(anon.status, 303);
  assert.match(anon.headers.get("location")!, /^\/login\?next=%2Fbilling%2Felectricity/);
});

Deno.test("bad input on every field is refused with a message, escaped, and moves nothing", async () => {
  await using w = await setupApp();
  const { r101, r102 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 100_00);
  const token = () => s.client.page("/billing/electricity").then(payForm);
  for (
    const amount of [
      "0",
      "-1",
      "0.001",
      "1e9",
      "1000000000",
      "abc",
      "<script>alert(1)</script>",
      " ",
      "１０",
      "NaN",
      "10,5",
    ]
  ) {
    const res = await s.client.post("/billing/electricity", { token: await token(), amount });
    assert.equal(res.status, 422, `amount ${amount}`);
    const html = await res.text();
    assert.doesNotMatch(html, /<script>alert/);
    assert.match(html, /金额/);
  }
  for (const quick of ["0", "-5", "0.001", "1e9", "<b>x</b>"]) {
    const res = await s.client.post("/billing/electricity", { token: await token(), quick });
    assert.equal(res.status, 422, `quick ${quick}`);
    assert.doesNotMatch(await res.text(), /<b>x<\/b>/);
  }
  for (const bad of ["", "short", "<script>x</script>-aaaaaaaaaaaaa", "a".repeat(99)]) {
    const res = await s.client.post("/billing/electricity", { token: bad, amount: "10" });
    assert.equal(res.status, 422, `token ${bad}`);
    assert.match(await res.text(), /页面已过期/);
  }
  const noToken = await s.client.post("/billing/electricity", { amount: "10" });
  assert.equal(noToken.status, 422);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 100_00);

  // The room form: someone else's building, nonsense, a room that is not there.
  const other = await makeStudent(w, { balance: 0 });
  for (const room of ["abc", "-1", "0", "999999", "1e3", "<i>1</i>", ""]) {
    const res = await other.client.post("/billing/room", { room });
    assert.equal(res.status, 422, `room ${room}`);
    assert.doesNotMatch(await res.text(), /<i>1<\/i>/);
  }
  const wrongBuilding = await other.client.post("/billing/room", {
    building: "999",
    room: String(r102.id),
  });
  assert.equal(wrongBuilding.status, 422);
  const res = await other.client.post("/billing/room", {
    room: String(r102.id),
    next: "https://evil.example/",
  });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/billing/electricity");

  // Another student's order page is not visible.
  const pay = await s.client.post("/billing/electricity", { token: await token(), amount: "10" });
  const order = pay.headers.get("location")!;
  assert.equal((await other.client.get(order)).status, 404);
  assert.equal((await other.client.get("/billing/orders/<script>")).status, 404);
});

Deno.test("a room is chosen once; a second choice is refused and points to the card office", async () => {
  await using w = await setupApp();
  const { r101, r102 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id);
  const again = await s.client.post("/billing/room", { room: String(r102.id) });
  assert.equal(again.status, 422);
  assert.match(await again.text(), /如需更换请到一卡通中心办理/);
  const page = await s.client.page("/billing/room");
  assert.match(page, /1号楼 101/);
  assert.doesNotMatch(page, /第二步/);
});

Deno.test("a full room refuses one more resident", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  await w.db.updateTable("billing_rooms").set({ capacity: 1 }).where("id", "=", r101.id)
    .execute();
  await studentInRoom(w, r101.id);
  const late = await makeStudent(w);
  const res = await late.client.post("/billing/room", { room: String(r101.id) });
  assert.equal(res.status, 422);
  assert.match(await res.text(), /该房间已住满/);
});

Deno.test("utility transfers are labelled 电费/冷水 with the room and state for 交易记录", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await studentInRoom(w, r101.id, 50_00);
  const res = await s.client.post("/billing/water", {
    token: await payForm(await s.client.page("/billing/water")),
    amount: "10",
  });
  const orderNo = res.headers.get("location")!.split("/").pop()!;
  const p = await w.db.selectFrom("billing_purchases").select("transfer_id")
    .executeTakeFirstOrThrow();
  const before = await describeUtilityTransfers(w.db, [p.transfer_id!, 999_999]);
  assert.deepEqual(before.get(p.transfer_id!), {
    label: "冷水",
    room: "1号楼 101",
    status: "delivering",
    statusLabel: "充值中",
    orderNo,
  });
  assert.equal(before.size, 1);
  await deliver(w);
  assert.equal(
    (await describeUtilityTransfers(w.db, [p.transfer_id!])).get(p.transfer_id!)?.statusLabel,
    "已到账",
  );
  // 交易记录 lists the payment as 冷水.
  const history = await s.client.page("/wallet/transactions");
  assert.match(history, /冷水/);
});

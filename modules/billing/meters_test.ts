import assert from "node:assert/strict";
import { getBalance } from "../wallet/mod.ts";
import { makeStudent, setupApp } from "../testkit/mod.ts";
import { assertLedgerBalanced, makeRooms } from "./_testing.ts";
import { runDueJobs } from "./delivery.ts";
import { MeterError } from "./errors.ts";
import { HttpMeter, type MeterOrder, signMeterRequest } from "./meters.ts";
import { findPurchase, purchaseUtility } from "./purchases.ts";
import { chooseRoom } from "./rooms.ts";
import { walletMoney } from "./wallet_link.ts";

const KEY = "meter-test-key-0123456789";

/**
 * A stand-in for the vendor's meter API on loopback: checks signatures and timestamps, credits
 * each order once, and can be told to fail or stall.
 */
function standIn(options: { fail?: number; stallMs?: number; refuse?: boolean } = {}) {
  const balances = new Map<string, number>();
  const orders = new Map<string, { balanceFen: number; reportedAt: string }>();
  const seen: Array<{ path: string; body: Record<string, unknown> }> = [];
  let failures = options.fail ?? 0;
  const ac = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const body = await req.text();
    const ts = req.headers.get("x-meter-timestamp") ?? "";
    const sig = req.headers.get("x-meter-signature") ?? "";
    if (
      sig !== await signMeterRequest(KEY, ts, body) ||
      Math.abs(Date.now() / 1000 - Number(ts)) > 300
    ) {
      return Response.json({ error: "bad signature" }, { status: 401 });
    }
    const payload = JSON.parse(body);
    const path = new URL(req.url).pathname;
    seen.push({ path, body: payload });
    if (options.stallMs) await new Promise((r) => setTimeout(r, options.stallMs));
    if (failures > 0) {
      failures--;
      return new Response("maintenance", { status: 503 });
    }
    if (options.refuse) return Response.json({ error: "unknown room" }, { status: 400 });
    if (path === "/api/orders/query") {
      const o = orders.get(payload.orderNo);
      return o
        ? Response.json({ orderNo: payload.orderNo, status: "delivered", ...o })
        : new Response(null, { status: 404 });
    }
    if (path !== "/api/orders") return new Response(null, { status: 404 });
    let o = orders.get(payload.orderNo);
    if (!o) {
      const key = `${payload.building}/${payload.room}/${payload.utility}`;
      const balanceFen = (balances.get(key) ?? 0) + payload.amountFen;
      balances.set(key, balanceFen);
      o = { balanceFen, reportedAt: new Date().toISOString() };
      orders.set(payload.orderNo, o);
    }
    return Response.json({ orderNo: payload.orderNo, status: "delivered", ...o });
  });
  const url = `http://127.0.0.1:${server.addr.port}/api`;
  return {
    url,
    balances,
    seen,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

const ORDER: MeterOrder = {
  orderNo: "DF20261125120000123456",
  roomId: 1,
  buildingCode: "B01",
  roomNumber: "101",
  utility: "electricity",
  amount: 20_00,
  milliUnits: 36_363,
};

Deno.test("the HTTP meter adapter signs its requests and a repeated order is credited once", async () => {
  const s = standIn();
  try {
    const meter = new HttpMeter({ url: s.url, key: KEY });
    const first = await meter.deliver(ORDER);
    const again = await meter.deliver(ORDER);
    assert.equal(first.balance, 20_00);
    assert.deepEqual(again, first);
    assert.equal(s.balances.get("B01/101/electricity"), 20_00);
    assert.deepEqual(s.seen[0].body, {
      orderNo: ORDER.orderNo,
      building: "B01",
      room: "101",
      utility: "electricity",
      amountFen: 20_00,
      milliUnits: 36_363,
    });
    assert.equal((await meter.lookup(ORDER.orderNo))?.balance, 20_00);
    assert.equal(await meter.lookup("DF20261125120000999999"), null);
    const wrongKey = new HttpMeter({ url: s.url, key: "not-the-key" });
    await assert.rejects(
      wrongKey.deliver(ORDER),
      (e) => e instanceof MeterError && !e.retryable && /401/.test(e.message),
    );
  } finally {
    await s.close();
  }
});

Deno.test("the HTTP meter adapter retries 5xx and timeouts, and gives up on a refusal", async () => {
  const down = standIn({ fail: 1 });
  const slow = standIn({ stallMs: 300 });
  const refusing = standIn({ refuse: true });
  try {
    await assert.rejects(
      new HttpMeter({ url: down.url, key: KEY }).deliver(ORDER),
      (e) => e instanceof MeterError && e.retryable,
    );
    assert.equal((await new HttpMeter({ url: down.url, key: KEY }).deliver(ORDER)).balance, 20_00);
    await assert.rejects(
      new HttpMeter({ url: slow.url, key: KEY, timeoutMs: 50 }).deliver(ORDER),
      (e) => e instanceof MeterError && e.retryable && /unreachable/.test(e.message),
    );
    await assert.rejects(
      new HttpMeter({ url: refusing.url, key: KEY }).deliver(ORDER),
      (e) => e instanceof MeterError && !e.retryable,
    );
    await assert.rejects(
      new HttpMeter({ url: "http://127.0.0.1:1/api", key: KEY }).deliver(ORDER),
      (e) => e instanceof MeterError && e.retryable,
    );
    assert.throws(() => new HttpMeter({ url: "ftp://x", key: KEY }), /METER_API_URL/);
    assert.throws(() => new HttpMeter({ url: down.url, key: "" }), /METER_API_KEY/);
  } finally {
    await Promise.all([down.close(), slow.close(), refusing.close()]);
  }
});

Deno.test("a purchase is delivered through the vendor API, and refunded when the API stays down", async () => {
  await using w = await setupApp();
  const up = standIn();
  const down = standIn({ fail: 1_000 });
  try {
    const { r101 } = await makeRooms(w.db);
    const student = await makeStudent(w, { balance: 100_00 });
    await chooseRoom(w.db, student.accountId, r101.id);
    const payer = {
      accountId: student.accountId,
      cardAccountId: student.cardAccountId!,
      name: "张三",
    };
    const ok = await purchaseUtility(w.db, walletMoney, {
      payer,
      utility: "water",
      amount: 15_00,
      token: "http-token-aaaaaaaaaaaa1",
    });
    await runDueJobs({
      db: w.db,
      meter: new HttpMeter({ url: up.url, key: KEY }),
      money: walletMoney,
    });
    assert.equal((await findPurchase(w.db, ok.id))?.status, "delivered");
    assert.equal(up.balances.get("B01/101/water"), 15_00);

    const bad = await purchaseUtility(w.db, walletMoney, {
      payer,
      utility: "water",
      amount: 25_00,
      token: "http-token-aaaaaaaaaaaa2",
    });
    let t = Date.now();
    for (let i = 0; i < 3; i++) {
      await runDueJobs({
        db: w.db,
        meter: new HttpMeter({ url: down.url, key: KEY }),
        money: walletMoney,
        policy: { maxAttempts: 3 },
        now: () => new Date(t),
      });
      t += 3600_000;
    }
    assert.equal((await findPurchase(w.db, bad.id))?.status, "refunded");
    assert.equal((await getBalance(w.db, student.cardAccountId!)).balance, 85_00);
    await assertLedgerBalanced(w.db);
  } finally {
    await Promise.all([up.close(), down.close()]);
  }
});

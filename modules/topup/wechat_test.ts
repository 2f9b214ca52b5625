/**
 * WeChat Pay v3 end to end against a stand-in server on loopback that speaks the same wire
 * format: it checks our merchant signatures, signs its answers and notifies with its own platform
 * key, and encrypts notify resources with the APIv3 key, all generated here.
 */
import assert from "node:assert/strict";
import { createSign, createVerify, generateKeyPairSync, randomBytes } from "node:crypto";
import { sql } from "kysely";
import { getBalance, verifyLedger } from "../wallet/mod.ts";
import {
  buildGateways,
  refundable,
  refundsOfOrder,
  requestTopupRefund,
  runTopupTick,
  settlePaid,
} from "./mod.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { makeStudent, setupApp } from "../testkit/mod.ts";

const APIV3_KEY = "0123456789abcdefABCDEF0123456789";
const MCHID = "1900000109";
const APPID = "wx8888888888888888";
const SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const PLATFORM_KEY_ID = "PUB_KEY_ID_0119000001092025112500000000000001";

interface StandInOrder {
  appid: string;
  mchid: string;
  out_trade_no: string;
  amount: { total: number };
  payer: { openid: string };
  notify_url: string;
  description: string;
  time_expire: string;
  state: "NOTPAY" | "SUCCESS" | "CLOSED";
  transaction_id: string;
  prepay_id: string;
}

function pemPair() {
  return generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
}

async function encrypt(key: string, plain: string, nonce: string, aad: string): Promise<string> {
  const enc = new TextEncoder();
  const k = await crypto.subtle.importKey("raw", enc.encode(key), "AES-GCM", false, ["encrypt"]);
  const out = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: enc.encode(nonce), additionalData: enc.encode(aad) },
    k,
    enc.encode(plain),
  );
  return btoa(String.fromCharCode(...new Uint8Array(out)));
}

/** The stand-in WeChat Pay server. */
async function startStandIn() {
  const merchant = pemPair();
  const platform = pemPair();
  const orders = new Map<string, StandInOrder>();
  const seen: string[] = [];
  const rejected: string[] = [];
  /** Refunds by out_refund_no; `refundAnswer` decides what a new one becomes. */
  const refunds = new Map<
    string,
    { out_trade_no: string; amount: number; status: string; refund_id: string }
  >();
  const control = { refundAnswer: "SUCCESS" as "SUCCESS" | "PROCESSING" | "ABNORMAL" | "500" };

  const signHeaders = (
    body: string,
    key = platform.privateKey,
    ts = Math.floor(Date.now() / 1000),
  ) => {
    const nonce = randomBytes(16).toString("hex");
    const signature = createSign("RSA-SHA256").update(`${ts}\n${nonce}\n${body}\n`).sign(
      key,
      "base64",
    );
    return {
      "wechatpay-timestamp": String(ts),
      "wechatpay-nonce": nonce,
      "wechatpay-signature": signature,
      "wechatpay-serial": PLATFORM_KEY_ID,
    };
  };
  const reply = (status: number, payload: unknown) => {
    const body = payload === null ? "" : JSON.stringify(payload);
    return new Response(status === 204 ? null : body, {
      status,
      headers: {
        "content-type": "application/json",
        "request-id": crypto.randomUUID(),
        ...signHeaders(body),
      },
    });
  };
  const authOk = (req: Request, pathAndQuery: string, body: string): boolean => {
    const h = req.headers.get("authorization") ?? "";
    const m = /^WECHATPAY2-SHA256-RSA2048 (.+)$/.exec(h);
    if (!m) return false;
    const f = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (f.mchid !== MCHID || f.serial_no !== SERIAL || !f.nonce_str || !f.signature) return false;
    if (Math.abs(Date.now() / 1000 - Number(f.timestamp)) > 300) return false;
    const msg = `${req.method}\n${pathAndQuery}\n${f.timestamp}\n${f.nonce_str}\n${body}\n`;
    return createVerify("RSA-SHA256").update(msg).verify(merchant.publicKey, f.signature, "base64");
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const body = req.method === "POST" ? await req.text() : "";
    const pq = url.pathname + url.search;
    seen.push(`${req.method} ${url.pathname}`);
    if (url.pathname === "/sns/oauth2/access_token") {
      if (
        url.searchParams.get("appid") !== APPID || url.searchParams.get("secret") !== "oauth-secret"
      ) {
        return Response.json({ errcode: 40125, errmsg: "invalid appsecret" });
      }
      return url.searchParams.get("code") === "CODE123"
        ? Response.json({ access_token: "x", openid: "oOPENID_student_1", scope: "snsapi_base" })
        : Response.json({ errcode: 40029, errmsg: "invalid code" });
    }
    if (!authOk(req, pq, body)) {
      rejected.push(pq);
      return reply(401, { code: "SIGN_ERROR", message: "签名错误" });
    }
    if (req.method === "POST" && url.pathname === "/v3/pay/transactions/jsapi") {
      const o = JSON.parse(body);
      if (
        o.mchid !== MCHID || o.appid !== APPID || !Number.isInteger(o.amount?.total) ||
        !o.payer?.openid || !o.notify_url
      ) {
        return reply(400, { code: "PARAM_ERROR", message: "参数错误" });
      }
      if (orders.has(o.out_trade_no)) {
        return reply(400, { code: "OUT_TRADE_NO_USED", message: "商户订单号重复" });
      }
      const prepay = `wx${Date.now()}${randomBytes(6).toString("hex")}`;
      orders.set(o.out_trade_no, {
        ...o,
        state: "NOTPAY",
        transaction_id: `42000${Date.now()}${randomBytes(3).toString("hex")}`,
        prepay_id: prepay,
      });
      return reply(200, { prepay_id: prepay });
    }
    if (req.method === "POST" && url.pathname === "/v3/refund/domestic/refunds") {
      const r = JSON.parse(body);
      const o = orders.get(r.out_trade_no);
      if (!o || o.state !== "SUCCESS") {
        return reply(404, { code: "RESOURCE_NOT_EXISTS", message: "订单不存在" });
      }
      if (r.amount?.total !== o.amount.total || r.amount?.currency !== "CNY") {
        return reply(400, { code: "PARAM_ERROR", message: "订单金额不符" });
      }
      const known = refunds.get(r.out_refund_no);
      if (known) return reply(200, refundView(r.out_refund_no));
      if (control.refundAnswer === "500") {
        return reply(500, { code: "SYSTEM_ERROR", message: "系统繁忙" });
      }
      const given = [...refunds.values()].filter((x) =>
        x.out_trade_no === r.out_trade_no && x.status !== "CLOSED"
      ).reduce((a, x) => a + x.amount, 0);
      if (given + r.amount.refund > o.amount.total) {
        return reply(403, { code: "INVALID_REQUEST", message: "申请退款金额超过订单可退金额" });
      }
      refunds.set(r.out_refund_no, {
        out_trade_no: r.out_trade_no,
        amount: r.amount.refund,
        status: control.refundAnswer,
        refund_id: `50300${Date.now()}${randomBytes(3).toString("hex")}`,
      });
      return reply(200, refundView(r.out_refund_no));
    }
    const rq = /^\/v3\/refund\/domestic\/refunds\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && rq) {
      const no = decodeURIComponent(rq[1]);
      if (!refunds.has(no)) {
        return reply(404, { code: "RESOURCE_NOT_EXISTS", message: "退款单不存在" });
      }
      return reply(200, refundView(no));
    }
    const q = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)(\/close)?$/.exec(url.pathname);
    if (q) {
      const o = orders.get(decodeURIComponent(q[1]));
      if (!o) return reply(404, { code: "ORDER_NOT_EXIST", message: "订单不存在" });
      if (q[2] && req.method === "POST") {
        if (JSON.parse(body).mchid !== MCHID) {
          return reply(400, { code: "PARAM_ERROR", message: "mchid" });
        }
        if (o.state === "SUCCESS") return reply(400, { code: "ORDERPAID", message: "订单已支付" });
        o.state = "CLOSED";
        return reply(204, null);
      }
      if (url.searchParams.get("mchid") !== MCHID) {
        return reply(400, { code: "PARAM_ERROR", message: "mchid" });
      }
      return reply(200, transaction(o));
    }
    return reply(404, { code: "NOT_FOUND", message: "no such API" });
  });

  function refundView(no: string) {
    const r = refunds.get(no)!;
    return {
      refund_id: r.refund_id,
      out_refund_no: no,
      transaction_id: orders.get(r.out_trade_no)!.transaction_id,
      out_trade_no: r.out_trade_no,
      channel: "ORIGINAL",
      user_received_account: "支付用户零钱",
      create_time: new Date().toISOString(),
      status: r.status,
      amount: {
        refund: r.amount,
        total: orders.get(r.out_trade_no)!.amount.total,
        currency: "CNY",
      },
    };
  }

  function transaction(o: StandInOrder, total = o.amount.total) {
    return {
      appid: o.appid,
      mchid: o.mchid,
      out_trade_no: o.out_trade_no,
      transaction_id: o.transaction_id,
      trade_type: "JSAPI",
      trade_state: o.state,
      trade_state_desc: o.state === "SUCCESS" ? "支付成功" : "未支付",
      bank_type: "OTHERS",
      success_time: new Date().toISOString(),
      payer: { openid: o.payer.openid },
      amount: { total, payer_total: total, currency: "CNY", payer_currency: "CNY" },
    };
  }

  /** The notify WeChat would send for an order, optionally tampered with. */
  async function notify(
    orderNo: string,
    opts: { total?: number; signWith?: string; ts?: number; key?: string } = {},
  ) {
    const o = orders.get(orderNo)!;
    const nonce = randomBytes(6).toString("hex");
    const resource = {
      original_type: "transaction",
      algorithm: "AEAD_AES_256_GCM",
      ciphertext: await encrypt(
        opts.key ?? APIV3_KEY,
        JSON.stringify(transaction(o, opts.total)),
        nonce,
        "transaction",
      ),
      associated_data: "transaction",
      nonce,
    };
    const body = JSON.stringify({
      id: crypto.randomUUID(),
      create_time: new Date().toISOString(),
      resource_type: "encrypt-resource",
      event_type: "TRANSACTION.SUCCESS",
      summary: "支付成功",
      resource,
    });
    const headers = signHeaders(body, opts.signWith ?? platform.privateKey, opts.ts);
    return { body, headers: { "content-type": "application/json", ...headers }, url: o.notify_url };
  }

  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/apiclient_key.pem`, merchant.privateKey);
  await Deno.writeTextFile(`${dir}/pub_key.pem`, platform.publicKey);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    orders,
    seen,
    rejected,
    merchant,
    refunds,
    control,
    notify,
    pay(orderNo: string) {
      orders.get(orderNo)!.state = "SUCCESS";
    },
    env: {
      WECHAT_APPID: APPID,
      WECHAT_MCHID: MCHID,
      WECHAT_SERIAL_NO: SERIAL,
      WECHAT_PRIVATE_KEY_PATH: `${dir}/apiclient_key.pem`,
      WECHAT_APIV3_KEY: APIV3_KEY,
      WECHAT_PLATFORM_PUBLIC_KEY_PATH: `${dir}/pub_key.pem`,
      WECHAT_PLATFORM_PUBLIC_KEY_ID: PLATFORM_KEY_ID,
      WECHAT_API_BASE: `http://127.0.0.1:${server.addr.port}`,
      WECHAT_OAUTH_API_BASE: `http://127.0.0.1:${server.addr.port}`,
      WECHAT_APP_SECRET: "oauth-secret",
    },
    async close() {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("WeChat Pay v3 JSAPI round trip: OAuth openid, signed order, JSAPI parameters, encrypted notify, query and close", async () => {
  const standIn = await startStandIn();
  await using base = await setupApp();
  const config = {
    ...base.config,
    paymentGateway: "wechat",
    env: { ...base.config.env, ...standIn.env },
  };
  const { createApp } = await import("../../main.ts");
  const app = createApp({ db: base.db, config, onShutdown: () => {} });
  const ctx = { ...base, config, app };
  const credits = async (cardAccountId: number) =>
    (await sql<
      { n: number }
    >`select count(*)::int as n from ledger_transfers where card_account_id = ${cardAccountId} and kind = 'topup'`
      .execute(ctx.db)).rows[0].n;
  const post = (n: { body: string; headers: Record<string, string>; url: string }) =>
    app.request(`http://localhost:8000${new URL(n.url).pathname}`, {
      method: "POST",
      headers: n.headers,
      body: n.body,
    });
  try {
    const s = await makeStudent(ctx);
    const form = await s.client.page("/wallet/recharge");
    assert.match(form, /微信支付/);
    assert.doesNotMatch(form, /测试支付/);

    // No openid yet: the silent snsapi_base OAuth comes first.
    const first = await s.client.post("/wallet/recharge", { amount: "25.5", method: "wechat" });
    assert.equal(first.headers.get("location"), "/wallet/recharge/wechat/oauth");
    const go = await s.client.get("/wallet/recharge/wechat/oauth");
    const authorize = new URL(go.headers.get("location")!);
    assert.equal(
      authorize.origin + authorize.pathname,
      "https://open.weixin.qq.com/connect/oauth2/authorize",
    );
    assert.equal(authorize.searchParams.get("scope"), "snsapi_base");
    const state = authorize.searchParams.get("state")!;
    assert.equal(
      (await s.client.get(`/wallet/recharge/wechat/callback?code=CODE123&state=forged`)).status,
      400,
    );
    const back = await s.client.get(`/wallet/recharge/wechat/callback?code=CODE123&state=${state}`);
    assert.equal(back.status, 303);

    const res = await s.client.post("/wallet/recharge", { amount: "25.5", method: "wechat" });
    assert.equal(res.status, 303);
    const orderNo = /\/orders\/(YXT\d+)\/pay$/.exec(res.headers.get("location")!)![1];
    const remote = standIn.orders.get(orderNo)!;
    assert.equal(remote.amount.total, 2550);
    assert.equal(remote.payer.openid, "oOPENID_student_1");
    assert.equal(remote.notify_url, "http://localhost:8000/pay/notify/wechat");
    assert.match(remote.time_expire, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$/);

    const page = await s.client.page(`/wallet/recharge/orders/${orderNo}/pay`);
    const raw = /data-jsapi="([^"]+)"/.exec(page)![1].replaceAll("&quot;", '"').replaceAll(
      "&#34;",
      '"',
    ).replaceAll("&amp;", "&");
    const params = JSON.parse(raw);
    assert.equal(params.package, `prepay_id=${remote.prepay_id}`);
    assert.equal(params.signType, "RSA");
    assert.ok(
      createVerify("RSA-SHA256").update(
        `${params.appId}\n${params.timeStamp}\n${params.nonceStr}\n${params.package}\n`,
      )
        .verify(standIn.merchant.publicKey, params.paySign, "base64"),
      "paySign verifies with the merchant key",
    );

    // Notifies that must not credit: forged signature, stale timestamp, wrong APIv3 key, wrong amount.
    standIn.pay(orderNo);
    const other = pemPair();
    assert.equal(
      (await post(await standIn.notify(orderNo, { signWith: other.privateKey }))).status,
      401,
    );
    assert.equal(
      (await post(await standIn.notify(orderNo, { ts: Math.floor(Date.now() / 1000) - 3600 })))
        .status,
      401,
    );
    assert.equal(
      (await post(await standIn.notify(orderNo, { key: "ffffffffffffffffffffffffffffffff" })))
        .status,
      401,
    );
    const wrong = await post(await standIn.notify(orderNo, { total: 1 }));
    assert.equal(wrong.status, 200);
    assert.equal(await credits(s.cardAccountId), 0);
    assert.equal(
      (await ctx.db.selectFrom("topup_orders").select("flagged").where("order_no", "=", orderNo)
        .executeTakeFirstOrThrow()).flagged,
      true,
    );

    // The real notify, then the same again, and ten at once: one credit.
    const good = await standIn.notify(orderNo);
    const ok = await post(good);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { code: "SUCCESS", message: "成功" });
    const again = await Promise.all(Array.from({ length: 10 }, () => post(good)));
    assert.ok(again.every((r) => r.status === 200));
    assert.equal(await credits(s.cardAccountId), 1);
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 2550);
    assert.match(await s.client.page(`/wallet/recharge/orders/${orderNo}`), /充值成功/);

    // A payment whose notify never comes is found by the query; an unpaid one is closed.
    const quiet = /\/orders\/(YXT\d+)\/pay$/.exec(
      (await s.client.post("/wallet/recharge", { amount: "10", method: "wechat" })).headers.get(
        "location",
      )!,
    )![1];
    const unpaid = /\/orders\/(YXT\d+)\/pay$/.exec(
      (await s.client.post("/wallet/recharge", { amount: "11", method: "wechat" })).headers.get(
        "location",
      )!,
    )![1];
    standIn.pay(quiet);
    await runTopupTick(ctx, buildGateways(ctx), app, new Date(Date.now() + 61_000));
    const state1 = await ctx.db.selectFrom("topup_orders").select(["order_no", "state"]).where(
      "order_no",
      "in",
      [quiet, unpaid],
    ).orderBy("id").execute();
    assert.deepEqual(state1.map((o) => o.state), ["paid", "pending"]);
    await runTopupTick(ctx, buildGateways(ctx), app, new Date(Date.now() + 16 * 60_000));
    assert.equal(standIn.orders.get(unpaid)!.state, "CLOSED");
    assert.ok(standIn.seen.includes(`POST /v3/pay/transactions/out-trade-no/${unpaid}/close`));
    const state2 = await ctx.db.selectFrom("topup_orders").select("state").where(
      "order_no",
      "=",
      unpaid,
    ).executeTakeFirstOrThrow();
    assert.equal(state2.state, "closed");
    assert.deepEqual(
      standIn.rejected,
      [],
      "every request we sent carried a valid merchant signature",
    );
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 3550);
    assert.equal((await verifyLedger(ctx.db)).ok, true);
  } finally {
    await standIn.close();
  }
});

Deno.test("退回微信 through WeChat Pay v3: paid, processing then closed (money back on the card once), abnormal, and a lost request asked again", async () => {
  const standIn = await startStandIn();
  await using base = await setupApp();
  const config = {
    ...base.config,
    paymentGateway: "wechat",
    env: { ...base.config.env, ...standIn.env },
  };
  const ctx = { ...base, config };
  const gateways = buildGateways(ctx);
  const app = { fetch: () => new Response(null, { status: 404 }) };
  const later = (seconds: number) => new Date(Date.now() + seconds * 1000);
  try {
    const s = await makeStudent(ctx);
    const orderNo = `YXT${Date.now()}1234`;
    await ctx.db.insertInto("topup_orders").values({
      order_no: orderNo,
      account_id: s.accountId,
      card_account_id: s.cardAccountId,
      amount: 3000,
      method: "wechat",
      expires_at: later(900),
    }).execute();
    const txn = `4200${Date.now()}`;
    standIn.orders.set(orderNo, {
      appid: APPID,
      mchid: MCHID,
      out_trade_no: orderNo,
      amount: { total: 3000 },
      payer: { openid: "oOPENID_student_1" },
      notify_url: "",
      description: "充值",
      time_expire: "",
      state: "SUCCESS",
      transaction_id: txn,
      prepay_id: "",
    });
    assert.equal(
      await settlePaid(ctx, { method: "wechat", orderNo, txnId: txn, amount: 3000 }),
      "credited",
    );
    const fin = { staffId: await staffId(ctx), ip: null };
    const ask = (amount: string) =>
      requestTopupRefund(ctx, gateways, fin, {
        orderNo,
        amountText: amount,
        reason: "学生申请退回",
        token: crypto.randomUUID().replaceAll("-", ""),
      });
    const balance = async () => (await getBalance(ctx.db, s.cardAccountId)).balance;

    const paid = await ask("10");
    assert.equal(paid.refund.state, "succeeded");
    assert.equal(standIn.refunds.get(paid.refund.refund_no)!.amount, 1000);
    assert.equal(await balance(), 2000);

    standIn.control.refundAnswer = "PROCESSING";
    const slow = await ask("5");
    assert.equal(slow.refund.state, "processing");
    assert.equal(await balance(), 1500);
    await runTopupTick(ctx, gateways, app, later(61));
    assert.equal((await refundsOfOrder(ctx.db, slow.refund.order_id))[1].state, "processing");
    standIn.refunds.get(slow.refund.refund_no)!.status = "CLOSED";
    await runTopupTick(ctx, gateways, app, later(122));
    await runTopupTick(ctx, gateways, app, later(300));
    assert.equal((await refundsOfOrder(ctx.db, slow.refund.order_id))[1].state, "failed");
    assert.equal(await balance(), 2000);

    standIn.control.refundAnswer = "ABNORMAL";
    const abnormal = await ask("5");
    assert.equal(abnormal.refund.state, "abnormal");
    assert.equal(await balance(), 1500);

    // The request never reached WeChat (a 500): the loop finds no such refund and asks again.
    standIn.control.refundAnswer = "500";
    const lost = await ask("5");
    assert.equal(lost.refund.state, "processing");
    assert.equal(standIn.refunds.has(lost.refund.refund_no), false);
    standIn.control.refundAnswer = "SUCCESS";
    await runTopupTick(ctx, gateways, app, later(400));
    const rows = await refundsOfOrder(ctx.db, lost.refund.order_id);
    assert.deepEqual(rows.map((r) => r.state), ["succeeded", "failed", "abnormal", "succeeded"]);
    assert.equal(standIn.refunds.get(lost.refund.refund_no)!.amount, 500);
    assert.equal(await balance(), 1000);

    // What is left counts everything not given back: 30 − 10 − 5 (abnormal) − 5 = 10.
    assert.equal(refundable(3000, rows), 1000);
    await assert.rejects(ask("10.01"), /Refund above what is left/);
    const returns = await sql<{ n: number }>`select count(*)::int as n from ledger_transfers
      where kind = 'topup_refund_return'`.execute(ctx.db);
    assert.equal(returns.rows[0].n, 1);
    assert.deepEqual(standIn.rejected, []);
    const report = await verifyLedger(ctx.db);
    assert.equal(report.ok, true, report.problems.join("; "));
    assert.equal(report.totals.externalIn, 1000);
  } finally {
    await standIn.close();
  }
});

async function staffId(ctx: { db: Parameters<typeof createStaff>[0] }): Promise<number> {
  return await createStaff(ctx.db, {
    username: `fin${Date.now() % 100000}`,
    name: "财务",
    password: "Staff12345",
    roles: [ROLES.finance],
  });
}

Deno.test("代充 through WeChat Pay: the payer's own openid, JSAPI, one credit, the payer's page only", async () => {
  const standIn = await startStandIn();
  await using base = await setupApp();
  const config = {
    ...base.config,
    paymentGateway: "wechat",
    env: { ...base.config.env, ...standIn.env },
  };
  const { createApp } = await import("../../main.ts");
  const app = createApp({ db: base.db, config, onShutdown: () => {} });
  const ctx = { ...base, config, app };
  const WX = {
    "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.50",
  };
  try {
    const s = await makeStudent(ctx, { name: "张三丰" });
    const { studentNumber, schoolId } = await ctx.db.selectFrom("card_accounts")
      .select(["student_number as studentNumber", "school_id as schoolId"])
      .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
    const { TestClient } = await import("../platform/testing.ts");
    const payer = new TestClient(app, config, "10.6.0.1");
    const found = await payer.post("/topup/proxy", {
      school_id: String(schoolId),
      student_number: studentNumber,
      name: "张三丰",
    }, { headers: WX });
    const confirm = found.headers.get("location")!;
    // Inside WeChat the payer's openid is learnt first (snsapi_base), the state tied to this browser.
    const first = await payer.get(confirm, WX);
    assert.equal(first.status, 302);
    const go = await payer.get(first.headers.get("location")!, WX);
    const authorize = new URL(go.headers.get("location")!);
    assert.equal(authorize.searchParams.get("scope"), "snsapi_base");
    assert.equal(
      authorize.searchParams.get("redirect_uri"),
      "http://localhost:8000/topup/proxy/wechat/callback",
    );
    const state = authorize.searchParams.get("state")!;
    const stranger = new TestClient(app, config, "10.6.0.2");
    assert.equal(
      (await stranger.get(`/topup/proxy/wechat/callback?code=CODE123&state=${state}`, WX)).status,
      400,
      "another browser cannot use the state",
    );
    const back = await payer.get(`/topup/proxy/wechat/callback?code=CODE123&state=${state}`, WX);
    assert.equal(back.status, 303);
    assert.equal(back.headers.get("location"), confirm);
    const page = await payer.page(confirm, WX);
    assert.match(page, /张\*\*/);
    const ticket = /name="ticket" value="([^"]+)"/.exec(page)![1];
    const res = await payer.post("/topup/proxy/pay", { ticket, amount: "88", method: "wechat" }, {
      headers: WX,
    });
    assert.equal(res.status, 303);
    const orderNo = /\/topup\/proxy\/orders\/(YXT\d+)\/pay$/.exec(res.headers.get("location")!)![1];
    const remote = standIn.orders.get(orderNo)!;
    assert.equal(remote.payer.openid, "oOPENID_student_1", "the payer's own WeChat pays");
    assert.match(remote.description, /^校园一信通代充-\d{4}\*\*\*\*\d\d$/);
    assert.match(await payer.page(`/topup/proxy/orders/${orderNo}/pay`, WX), /立即支付/);
    const order = await ctx.db.selectFrom("topup_orders").select(["payer_key", "account_id"])
      .where("order_no", "=", orderNo).executeTakeFirstOrThrow();
    assert.deepEqual(order, { payer_key: "wx:oOPENID_student_1", account_id: null });
    standIn.pay(orderNo);
    const n = await standIn.notify(orderNo);
    const post = () =>
      app.request(`http://localhost:8000${new URL(n.url).pathname}`, {
        method: "POST",
        headers: n.headers,
        body: n.body,
      });
    await Promise.all([post(), post(), post()]);
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 88_00);
    const result = await payer.page(`/topup/proxy/orders/${orderNo}`, WX);
    assert.match(result, /代充成功/);
    assert.doesNotMatch(result, /余额|张三丰/);
    assert.equal((await stranger.get(`/topup/proxy/orders/${orderNo}`, WX)).status, 404);
  } finally {
    await standIn.close();
  }
});

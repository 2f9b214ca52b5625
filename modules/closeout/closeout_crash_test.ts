/**
 * 毕业离校 through a crash (issue 19, PostgreSQL only): a batch of 3,000 cards is confirmed on the
 * batch page of a real server process (`deno run -A main.ts`), the process is SIGKILLed while
 * cards are being closed, a new one is started on the same database, and the batch page follows
 * the rest to 已完成. Every card is closed once, and every refund to WeChat, payout and 补助
 * return is booked once, as the ledger and its verifier say.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Config } from "../platform/config.ts";
import { csrfFor, type Fetcher, TestClient } from "../platform/testing.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { ensureSchool } from "../account/mod.ts";
import { DEMO_SCHOOL } from "../card/mod.ts";
import { buildGateways, runTopupTick } from "../topup/mod.ts";
import {
  creditTopUp,
  getBalance,
  grantLots,
  subsidyFundingAccount,
  verifyLedger,
} from "../wallet/mod.ts";
import { makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { createBatch } from "./mod.ts";

const onPostgres = !!Deno.env.get("DATABASE_URL");
const ROOT = new URL("../../", import.meta.url).pathname;
const CARDS = 3_000;
const WECHAT_HOLDERS = 12;
const THRESHOLD = 1_00;
const SECRET = "closeout-crash-app-secret-0123456789abcdef";
const PEPPER = "closeout-crash-card-pepper-0123456789abcdef";

/** What each imported card holds: nothing, a balance under the threshold, cash, cash and 补助. */
function moneyOf(i: number): { cash: number; subsidy: number } {
  if (i % 10 === 0) return { cash: 0, subsidy: 0 };
  if (i % 10 === 1) return { cash: 50, subsidy: 0 };
  return { cash: 10_00 + (i % 50) * 1_00, subsidy: i % 4 === 0 ? 20_00 : 0 };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A real server process on the test's database. */
interface Main {
  client(): TestClient;
  output(): string;
  kill(signal: "SIGKILL" | "SIGTERM"): Promise<void>;
}

async function startMain(databaseUrl: string, dataDir: string): Promise<Main> {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    LOG_LEVEL: "warn",
    HOST: "127.0.0.1",
    PORT: String(port),
    TERMINAL_PORT: String(freePort()),
    BASE_URL: url,
    DATABASE_URL: databaseUrl,
    DATA_DIR: dataDir,
    APP_SECRET: SECRET,
    CARD_PEPPER: PEPPER,
    PAYMENT_GATEWAY: "sandbox",
    ALLOW_SANDBOX_GATEWAY: "1",
    MAIL_OUTBOX: "1",
    SEED_DEMO: "0",
    // A killed worker's cards are taken over once their leases run out: short ones here.
    CLOSEOUT_LEASE_MS: "3000",
    CLOSEOUT_POLL_MS: "500",
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const kill = async (signal: "SIGKILL" | "SIGTERM") => {
    if (!exited) child.kill(signal);
    await status;
    await drained;
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) throw new Error(`main.ts exited before it was ready:\n${output}`);
    const ok = await fetch(`${url}/healthz`).then(async (r) => {
      await r.body?.cancel();
      return r.ok;
    }, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      await kill("SIGKILL");
      throw new Error(`main.ts did not answer /healthz:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // TestClient speaks to an in-process app at http://localhost:8000; this one goes to the server.
  const remote: Fetcher = {
    request: (input, init) =>
      fetch(String(input).replace("http://localhost:8000", url), { ...init, redirect: "manual" }),
  };
  const config = { appSecret: SECRET } as Config;
  return { client: () => new TestClient(remote, config), output: () => output, kill };
}

/** Imports `CARDS` cardholders through the card office's import page (in-process). */
async function importCards(w: TestWorld, schoolId: number): Promise<string[]> {
  const clerk = w.client("10.7.0.1");
  await createStaff(w.db, {
    username: "importer",
    name: "导入员",
    password: "Import12345",
    roles: [ROLES.cardOffice],
  });
  assert.equal(
    (await clerk.post("/admin/login", { username: "importer", password: "Import12345" })).status,
    303,
  );
  const numbers: string[] = [];
  const lines = ["学号,姓名,身份证号,芯片卡号,类型"];
  for (let i = 0; i < CARDS; i++) {
    const n = String(i).padStart(5, "0");
    numbers.push(`G20250${n}`);
    lines.push(`G20250${n},毕业生,${idNumber(i)},66000${n},学生`);
  }
  const form = new FormData();
  form.set("_csrf", await csrfFor(clerk.config, clerk.cookies, true));
  form.set("school_id", String(schoolId));
  form.set("file", new File([lines.join("\r\n")], "毕业生.csv", { type: "text/csv" }));
  const upload = await w.app.request("http://localhost:8000/admin/cards/import", {
    method: "POST",
    headers: { cookie: [...clerk.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  }, { remoteAddr: { transport: "tcp", hostname: clerk.ip, port: 50000 } });
  assert.equal(upload.status, 303, await upload.text());
  assert.match(await clerk.page(upload.headers.get("location")!), /将新开户 <[^>]+>3000</);
  const commit = await clerk.post(`${upload.headers.get("location")}/commit`, {});
  assert.equal(commit.status, 303, await commit.text());
  return numbers;
}

/** A valid 身份证 number for card `i` (made up, with its ISO 7064 check character). */
function idNumber(i: number): string {
  const body = `530102${19850101 + (i % 28)}${String(i % 1000).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = body.split("").reduce((a, d, k) => a + Number(d) * weights[k], 0);
  return body + "10X98765432"[sum % 11];
}

Deno.test({
  name:
    "a graduation batch of 3,000 cards, its server SIGKILLed mid-run and started again, closes every card once and moves every refund, payout and 补助 return once (PostgreSQL)",
  ignore: !onPostgres,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using w = await setupApp({ appSecret: SECRET, cardPepper: PEPPER } as Partial<Config>);
    const school = await ensureSchool(w.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
    const numbers = await importCards(w, school.id);
    const cards = await w.db.selectFrom("card_accounts").select(["id", "student_number"])
      .where("student_number", "in", numbers).orderBy("student_number").execute();
    assert.equal(cards.length, CARDS);

    // Their money: cash top-ups, 补助 lots, and a few holders who topped up through WeChat.
    const expected = new Map<number, { cash: number; subsidy: number; wechat: number }>();
    for (let i = 0; i < CARDS; i += 16) {
      await Promise.all(
        cards.slice(i, i + 16).map(async (c, k) => {
          const m = moneyOf(i + k);
          expected.set(c.id, { ...m, wechat: 0 });
          if (m.cash > 0) {
            await creditTopUp(w.db, {
              cardAccountId: c.id,
              amount: m.cash,
              method: "test",
              reference: `crash-seed:${c.id}`,
            });
          }
        }),
      );
    }
    const lotGrants = cards.filter((c) => expected.get(c.id)!.subsidy > 0).map((c) => ({
      cardAccountId: c.id,
      amount: expected.get(c.id)!.subsidy,
      reference: `crash-lot:${c.id}`,
    }));
    await w.db.transaction().execute(async (trx) => {
      await grantLots(trx, {
        purse: "subsidy",
        fundingAccountId: await subsidyFundingAccount(trx, school),
        batchId: null,
        validFrom: new Date(Date.now() - 60_000),
        validUntil: new Date(Date.now() + 90 * 86_400_000),
        categories: ["canteen"],
      }, lotGrants);
    });
    const listed = [...numbers];
    for (let i = 0; i < WECHAT_HOLDERS; i++) {
      const s = await makeStudent(w, { balance: 5_00 });
      const res = await s.client.post("/wallet/recharge", { amount: "30", method: "sandbox" });
      const orderNo = res.headers.get("location")!.split("/").pop()!;
      assert.equal((await s.client.post(`/pay/sandbox/${orderNo}/confirm`)).status, 303);
      expected.set(s.cardAccountId, { cash: 35_00, subsidy: 0, wechat: 30_00 });
      const card = await w.db.selectFrom("card_accounts").select("student_number")
        .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
      listed.push(card.student_number);
    }
    await runTopupTick(w, buildGateways(w), w.app);
    const ids = [...expected.keys()];

    const staff = await createStaff(w.db, {
      username: "biye",
      name: "离校经办",
      password: "Biye123456",
      roles: [ROLES.cardOffice],
    });
    const today = new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 10);
    const batchId = await createBatch(w.db, { staffId: staff, ip: null }, {
      name: "2025届毕业生",
      schoolId: school.id,
      list: new TextEncoder().encode(`学号\n${listed.join("\n")}\n`),
      closeOn: today,
      refundRule: "origin_first",
      payoutMethod: "bank",
      threshold: THRESHOLD,
    });
    const total = CARDS + WECHAT_HOLDERS;
    const done = async () =>
      Number(
        (await sql<{ n: number }>`select count(*)::int as n from closeout_cards
          where batch_id = ${batchId} and state = 'done'`.execute(w.db)).rows[0].n,
      );

    const dataDir = await Deno.makeTempDir({ prefix: "yxt-closeout-crash-" });
    let server = await startMain(w.url!, dataDir);
    try {
      const page = server.client();
      const signIn = await page.post("/admin/login", {
        username: "biye",
        password: "Biye123456",
      });
      assert.equal(signIn.status, 303);
      assert.match(await page.page(`/admin/closeout/${batchId}`), /待确认/);
      const confirmed = await page.post(`/admin/closeout/${batchId}/confirm`, {});
      assert.equal(confirmed.status, 303);

      // A quarter of the way in, the process dies without a word.
      while (await done() < total / 4) await new Promise((r) => setTimeout(r, 50));
      const progress = await page.page(`/admin/closeout/${batchId}/progress`);
      assert.match(progress, /办理中/);
      await server.kill("SIGKILL");
      const atKill = await done();
      assert.ok(atKill < total, `the batch finished before the kill (${atKill})`);
      // The dead worker held cards in the middle of closing them: the next one takes them over.
      const { rows: [held] } = await sql<{ n: number }>`select count(*)::int as n
        from closeout_cards where batch_id = ${batchId} and state = 'queued'
          and lease_expires_at > now()`.execute(w.db);
      assert.ok(held.n > 0, "no card was leased when the server was killed");
      console.log(`SIGKILLed with ${atKill} of ${total} cards done, ${held.n} held by its worker`);

      server = await startMain(w.url!, dataDir);
      const again = server.client();
      assert.equal(
        (await again.post("/admin/login", { username: "biye", password: "Biye123456" })).status,
        303,
      );
      const deadline = Date.now() + 300_000;
      for (;;) {
        const p = await again.page(`/admin/closeout/${batchId}/progress`);
        if (/已完成/.test(p)) {
          assert.match(
            p,
            new RegExp(`已办理 <strong id="closeout-done">${total}</strong> / ${total}`),
          );
          break;
        }
        assert.doesNotMatch(p, /部分失败/, "no card failed");
        assert.ok(Date.now() < deadline, `the batch did not finish: ${p}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      await server.kill("SIGTERM");
    } catch (err) {
      await server.kill("SIGKILL");
      console.error(server.output().slice(-4000));
      throw err;
    } finally {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }

    // Every card closed, once.
    const rows = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", batchId)
      .execute();
    assert.equal(rows.length, total);
    assert.deepEqual(
      rows.filter((r) => r.state !== "done" || r.outcome !== "closed").map((r) =>
        r.card_account_id
      ),
      [],
    );
    const { rows: closings } = await sql<{ card_account_id: number; n: number }>`
      select card_account_id, count(*)::int as n from card_events
      where kind = 'closed' and card_account_id in (${sql.join(ids)})
      group by card_account_id`.execute(w.db);
    assert.equal(closings.length, total, "every card closed");
    assert.deepEqual(closings.filter((c) => c.n !== 1), [], "no card closed twice");
    const open = await w.db.selectFrom("card_accounts").select("id").where("id", "in", ids)
      .where("status", "!=", "cancelled").execute();
    assert.deepEqual(open, []);

    // Every movement once, of the amount the card's money called for.
    const { rows: moves } = await sql<
      { card_account_id: number; kind: string; n: number; sum: string }
    >`
      select card_account_id, kind, count(*)::int as n, sum(amount)::bigint as sum
      from ledger_transfers
      where card_account_id in (${sql.join(ids)})
        and kind in ('cash_out', 'subsidy_return', 'topup_refund')
      group by card_account_id, kind`.execute(w.db);
    const moved = new Map(moves.map((m) => [`${m.card_account_id}:${m.kind}`, m]));
    const problems: string[] = [];
    const expect = (id: number, kind: string, amount: number) => {
      const m = moved.get(`${id}:${kind}`);
      if (amount === 0 && m) problems.push(`${id} ${kind}: moved ${m.sum} in ${m.n}`);
      if (amount > 0 && (!m || m.n !== 1 || Number(m.sum) !== amount)) {
        problems.push(
          `${id} ${kind}: want ${amount} once, got ${m ? `${m.sum} in ${m.n}` : "none"}`,
        );
      }
    };
    for (const [id, m] of expected) {
      const kept = m.cash > 0 && m.cash < THRESHOLD;
      expect(id, "topup_refund", m.wechat);
      expect(id, "cash_out", kept ? 0 : m.cash - m.wechat);
      expect(id, "subsidy_return", m.subsidy);
      const left = (await getBalance(w.db, id)).balance;
      if (left !== (kept ? m.cash : 0)) problems.push(`${id}: ${left} left on the card`);
    }
    assert.deepEqual(problems, []);
    const refunds = await w.db.selectFrom("topup_refunds").select(["amount", "state"]).execute();
    assert.deepEqual(
      refunds.map((r) => [r.amount, r.state]),
      Array(WECHAT_HOLDERS).fill([30_00, "succeeded"]),
    );
    const verified = await verifyLedger(w.db);
    assert.equal(verified.ok, true, verified.problems.join("; "));
  },
});

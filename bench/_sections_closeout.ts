/**
 * The bench's 毕业离校 section (issue 19): a graduation batch of 20,000 cards on the running
 * server, from 确认办理 on the batch page to the progress fragment's 已完成 (target ≤ 60 s).
 *
 * The cards are imported through the card office's import page and funded from the bench's own
 * connection beforehand (cash top-ups, a tenth of them under the batch's ¥1.00 threshold, a tenth
 * empty, a quarter with a 补助 lot); the batch is made from their 学号 list and confirmed over
 * HTTP. The cash goes to the payout list (no WeChat top-up to refund: the bench has no paid
 * orders), the lots back to the school. Afterwards every card must be closed once and the books
 * balance (the ledger verifier), or the figure is reported as failed. The note gives the server's
 * and PostgreSQL's CPU per card in the timed window and what the server's connections were doing
 * (sampled): running, waiting for the blocklist head row, waiting on the server in a transaction.
 */
import { join } from "node:path";
import type { Db } from "../modules/platform/database.ts";
import { sql } from "kysely";
import { ensureSchool } from "../modules/account/mod.ts";
import { DEMO_SCHOOL } from "../modules/card/mod.ts";
import { createStaff, ROLES } from "../modules/staff/mod.ts";
import {
  creditTopUp,
  grantLots,
  subsidyFundingAccount,
  verifyLedger,
} from "../modules/wallet/mod.ts";
import { createBatch } from "../modules/closeout/mod.ts";
import { type Bench, perOp } from "./_bench.ts";
import { WebClient } from "./_http.ts";
import { fmt, OUT, verdict } from "./_lib.ts";
import { cpuBetween } from "./_cpu.ts";
import { idNumberFor, openWorld } from "./_world.ts";

/** Cards in the batch; `BENCH_CLOSEOUT_CARDS` makes a smaller one for a quick trial. */
export const CLOSEOUT_CARDS = Math.max(
  100,
  Math.floor(Number(Deno.env.get("BENCH_CLOSEOUT_CARDS") ?? 20_000)) || 20_000,
);
/** 20,000 cards in 60 s: a smaller trial batch is held to the same rate. */
const TARGET_SECONDS = (60 * CLOSEOUT_CARDS) / 20_000;
export const CLOSEOUT_FIGURE = `${fmt(CLOSEOUT_CARDS)}-card graduation batch`;
/** Card numbers of this section (the import section's are 500,000 on). */
const FIRST = 800_000;

/** Imports the section's cardholders through the import page; returns their 学号. */
async function importGraduates(web: WebClient, schoolId: number): Promise<string[]> {
  const numbers: string[] = [];
  const lines = ["学号,姓名,身份证号,芯片卡号,类型"];
  for (let i = 0; i < CLOSEOUT_CARDS; i++) {
    const n = FIRST + i;
    const number = `G${String(n).padStart(9, "0")}`;
    numbers.push(number);
    lines.push(`${number},毕业生,${idNumberFor(n)},6${String(n).padStart(9, "0")},学生`);
  }
  const csv = new TextEncoder().encode(lines.join("\r\n") + "\r\n");
  await Deno.writeFile(join(OUT, `closeout-${CLOSEOUT_CARDS}.csv`), csv);
  const page = await web.get("/admin/cards/import");
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
  if (!token) throw new Error(`no CSRF token on /admin/cards/import (${page.res.status})`);
  const form = new FormData();
  form.set("_csrf", token);
  form.set("school_id", String(schoolId));
  form.set("file", new File([csv], "graduates.csv", { type: "text/csv" }));
  const upload = await fetch(`${web.baseUrl}/admin/cards/import`, {
    method: "POST",
    body: form,
    headers: { cookie: web.cookieHeader },
    redirect: "manual",
  });
  await upload.body?.cancel();
  const preview = upload.headers.get("location");
  if (upload.status !== 303 || !preview) throw new Error(`import answered ${upload.status}`);
  const shown = await web.get(preview);
  const commit = await web.post(`${preview}/commit`, {}, { csrfFrom: shown.text });
  if (commit.res.status !== 303) throw new Error(`import commit answered ${commit.res.status}`);
  return numbers;
}

/** A graduation batch on the running server, seeded and ready to confirm. */
export interface SeededCloseout {
  /** The card office's signed-in session on the server. */
  web: WebClient;
  batchId: number;
  seedSeconds: number;
}

/**
 * Imports and funds the section's cardholders through the server at `serverUrl` and makes their
 * batch (a draft: nothing is closed yet).
 */
export async function seedCloseout(db: Db, serverUrl: string): Promise<SeededCloseout> {
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const username = `biye${Date.now() % 100000}`;
  const staffId = await createStaff(db, {
    username,
    name: "离校经办",
    password: "Biye123456",
    roles: [ROLES.cardOffice],
  });
  const web = new WebClient(serverUrl);
  const login = await web.submit("/admin/login", "/admin/login", {
    username,
    password: "Biye123456",
  });
  if (login.res.status !== 303) throw new Error(`staff sign-in answered ${login.res.status}`);

  const seedStart = performance.now();
  const numbers = await importGraduates(web, school.id);
  const cards = await db.selectFrom("card_accounts").select(["id", "student_number"])
    .where("school_id", "=", school.id).where("student_number", ">=", numbers[0])
    .where("student_number", "<=", numbers[numbers.length - 1]).orderBy("student_number")
    .execute();
  if (cards.length !== CLOSEOUT_CARDS) throw new Error(`${cards.length} cards imported`);
  const cashOf = (i: number) => i % 10 === 0 ? 0 : i % 10 === 1 ? 50 : 10_00 + (i % 90) * 1_00;
  for (let i = 0; i < cards.length; i += 16) {
    await Promise.all(
      cards.slice(i, i + 16).map((c, k) =>
        cashOf(i + k) > 0
          ? creditTopUp(db, {
            cardAccountId: c.id,
            amount: cashOf(i + k),
            method: "bench",
            reference: `bench-closeout:${c.id}`,
          })
          : null
      ),
    );
  }
  await db.transaction().execute(async (trx) => {
    await grantLots(
      trx,
      {
        purse: "subsidy",
        fundingAccountId: await subsidyFundingAccount(trx, school),
        batchId: null,
        validFrom: new Date(Date.now() - 60_000),
        validUntil: new Date(Date.now() + 90 * 86_400_000),
        categories: ["canteen"],
      },
      cards.filter((_, i) => i % 4 === 0).map((c) => ({
        cardAccountId: c.id,
        amount: 20_00,
        reference: `bench-closeout-lot:${c.id}`,
      })),
    );
  });
  await sql`analyze`.execute(db);
  const today = new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 10);
  const batchId = await createBatch(db, { staffId, ip: null }, {
    name: "压测离校批次",
    schoolId: school.id,
    list: new TextEncoder().encode(`学号\n${numbers.join("\n")}\n`),
    closeOn: today,
    refundRule: "origin_first",
    payoutMethod: "bank",
    threshold: 1_00,
  });
  const seedSeconds = (performance.now() - seedStart) / 1000;
  return { web, batchId, seedSeconds };
}

/** Confirms the batch on its page and follows the progress to 已完成; returns the seconds. */
export async function runCloseout({ web, batchId }: SeededCloseout): Promise<number> {
  const batchPage = await web.get(`/admin/closeout/${batchId}`);
  const start = performance.now();
  const confirmed = await web.post(`/admin/closeout/${batchId}/confirm`, {}, {
    csrfFrom: batchPage.text,
  });
  if (confirmed.res.status !== 303) throw new Error(`confirm answered ${confirmed.res.status}`);
  for (;;) {
    const p = await web.get(`/admin/closeout/${batchId}/progress`);
    if (/已完成|部分失败/.test(p.text)) {
      if (/部分失败/.test(p.text)) throw new Error("cards failed");
      return (performance.now() - start) / 1000;
    }
    if ((performance.now() - start) / 1000 > 900) throw new Error("not done in 15 minutes");
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs the section: seeds, then times the batch from 确认办理 to 已完成. */
export async function closeoutSection(bench: Bench): Promise<void> {
  const world = await openWorld(bench.yxtUrl);
  try {
    const seeded = await seedCloseout(world.db, bench.server!.url);
    const { batchId, seedSeconds } = seeded;

    const waits = await sampleWaits(bench.yxtUrl);
    const cpuBefore = await bench.meter.sample();
    const seconds = await runCloseout(seeded);
    const cpu = cpuBetween(cpuBefore, await bench.meter.sample());
    const waited = await waits.stop();

    const { rows: [c] } = await sql<{ done: number; closed: number; twice: number }>`
      select (select count(*)::int from closeout_cards where batch_id = ${batchId}
                and state = 'done' and outcome = 'closed') as done,
             (select count(distinct e.card_account_id)::int from card_events e
                join closeout_cards k on k.card_account_id = e.card_account_id
               where k.batch_id = ${batchId} and e.kind = 'closed') as closed,
             (select count(*)::int from (select e.card_account_id from card_events e
                join closeout_cards k on k.card_account_id = e.card_account_id
               where k.batch_id = ${batchId} and e.kind = 'closed'
               group by e.card_account_id having count(*) > 1) t) as twice`.execute(world.db);
    const books = await verifyLedger(world.db);
    const right = c.done === CLOSEOUT_CARDS && c.closed === CLOSEOUT_CARDS && c.twice === 0 &&
      books.ok;
    bench.report.add({
      section: "closeout",
      figure: CLOSEOUT_FIGURE,
      value: `${fmt(seconds, 1)} s (${fmt(CLOSEOUT_CARDS / seconds)} cards/s); ${
        fmt(c.done)
      } closed once${books.ok ? ", books balance" : `; ledger: ${books.problems[0]}`}`,
      target: `≤ ${fmt(TARGET_SECONDS)} s`,
      verdict: verdict(right && seconds <= TARGET_SECONDS),
    });
    bench.report.note(
      `毕业离校: ${
        fmt(CLOSEOUT_CARDS)
      } cards imported through the import page and funded (cash, a tenth under the ¥1.00 threshold, a tenth empty, a quarter with a ¥20.00 补助 lot) in ${
        fmt(seedSeconds)
      } s, not timed; the time is from 确认办理 (POST) to the progress fragment's 已完成, one server's worker, then checked: each card closed once, the ledger verifier. In that window: server CPU ${
        fmt(cpu.server, 1)
      } s (${fmt(perOp(cpu.server, CLOSEOUT_CARDS))} µs/card), PostgreSQL CPU ${
        fmt(cpu.db, 1)
      } s (${
        fmt(perOp(cpu.db, CLOSEOUT_CARDS))
      } µs/card); the server's connections, sampled every ${WAIT_SAMPLE_MS} ms (${waited.samples} samples), were on average ${waited.summary}.`,
    );
  } finally {
    await world.close();
  }
}

const WAIT_SAMPLE_MS = 100;

/**
 * Samples what the server's connections do (pg_stat_activity) until stopped: running, waiting for
 * a lock (and whether on the blocklist head row), waiting on the server inside a transaction
 * (its JavaScript or the way there and back), or on I/O. The averages say whether closing is bound
 * by the statements' CPU, by the server, or by the one serialised bump of `card_blocklist_head`.
 */
async function sampleWaits(url: string): Promise<{
  stop(): Promise<{ samples: number; summary: string }>;
}> {
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: url, application_name: "yxt-bench-waits" });
  await client.connect();
  const totals = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await client.query(`
        select case
          when state = 'idle in transaction' then 'idle in transaction (server side)'
          when wait_event_type = 'Lock' and query ilike '%card_blocklist_head%'
            then 'waiting for the blocklist head row'
          when wait_event_type = 'Lock' then 'waiting for another lock (' || wait_event || ')'
          when wait_event_type is null then 'running a statement'
          else 'waiting on ' || wait_event_type || ':' || wait_event end as what,
          count(*)::int as n
        from pg_stat_activity
        where datname = current_database() and backend_type = 'client backend'
          and pid <> pg_backend_pid() and application_name not like 'yxt-bench%'
          and state in ('active', 'idle in transaction')
        group by 1`);
      samples++;
      for (const row of r.rows) {
        totals.set(String(row.what), (totals.get(String(row.what)) ?? 0) + Number(row.n));
      }
      await new Promise((r) => setTimeout(r, WAIT_SAMPLE_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await client.end();
      const parts = [...totals].sort((a, b) => b[1] - a[1])
        .map(([what, n]) => `${fmt(n / Math.max(1, samples), 2)} ${what}`);
      return { samples, summary: parts.join(", ") || "idle" };
    },
  };
}

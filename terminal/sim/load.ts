/**
 * Load mode: N readers of each kind paying at a rate or as fast as they can, with a progress line
 * every second and a latency summary at the end. `setupLoad` creates the readers and funded cards
 * it needs through the same modules the server uses (run it on the server's configuration).
 */
import { sql } from "kysely";
import type { Db } from "../../modules/platform/database.ts";
import type { Config } from "../../modules/platform/config.ts";
import {
  createMerchant,
  registerTerminal,
  terminalKeyHex,
  type TerminalKind,
} from "../../modules/merchant/mod.ts";
import { createCardAccountForTest } from "../../modules/card/mod.ts";
import { creditTopUp, issuePaymentCode } from "../../modules/wallet/mod.ts";
import { MessageCode, Status, statusName } from "../messages.ts";
import { TerminalClient } from "./client.ts";

export type LoadKind = "card" | "qr" | "shower";

/** One simulated reader: its terminal and the cards it swipes (its own, so no two readers share a row). */
export interface LoadReader {
  kind: LoadKind;
  terminalId: number;
  keyHex: string;
  cards: Array<{ cardAccountId: number; chip: string }>;
}

export interface LoadSummary {
  kind: LoadKind;
  readers: number;
  seconds: number;
  ok: number;
  refused: number;
  failed: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  refusals: Record<string, number>;
}

const TERMINAL_KIND: Record<LoadKind, TerminalKind> = {
  card: "canteen_pos",
  qr: "qr_scanner",
  shower: "shower",
};

function checkDigitedId(n: number): string {
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const body = `53010219900101${String(n % 1000).padStart(3, "0")}`;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(body[i]) * weights[i];
  return body + "10X98765432"[sum % 11];
}

/**
 * Creates (or reuses) `readers` readers of `kind` under the merchant LOAD-<KIND>, each with
 * `cardsPerReader` cards holding `balance` fen.
 */
export async function setupLoad(
  db: Db,
  config: Config,
  options: { kind: LoadKind; readers: number; cardsPerReader: number; balance: number },
): Promise<LoadReader[]> {
  const code = `LOAD-${options.kind.toUpperCase()}`;
  const category = options.kind === "shower" ? "shower" : "canteen";
  const merchant =
    await db.selectFrom("merchants").select("id").where("code", "=", code).executeTakeFirst() ??
      await createMerchant(db, { code, name: `压测商户${options.kind}`, category });
  const out: LoadReader[] = [];
  for (let i = 0; i < options.readers; i++) {
    const name = `load-${options.kind}-${i + 1}`;
    const existing = await db.selectFrom("terminals").select(["id", "key_version"]).where(
      "merchant_id",
      "=",
      merchant.id,
    )
      .where("name", "=", name).executeTakeFirst();
    const terminal = existing
      ? {
        id: existing.id,
        keyHex: terminalKeyHex(config.appSecret, existing.id, existing.key_version),
      }
      : await registerTerminal(db, config.appSecret, {
        merchantId: merchant.id,
        kind: TERMINAL_KIND[options.kind],
        name,
      })
        .then((r) => ({ id: r.terminal.id, keyHex: r.keyHex }));
    const cards: LoadReader["cards"] = [];
    for (let j = 0; j < options.cardsPerReader; j++) {
      const chip = `L${options.kind[0].toUpperCase()}${String(terminal.id).padStart(6, "0")}${
        String(j).padStart(4, "0")
      }`;
      const found = await db.selectFrom("card_chips").select("card_account_id").where(
        "chip_number",
        "=",
        chip,
      )
        .executeTakeFirst();
      const cardAccountId = found?.card_account_id ??
        (await createCardAccountForTest(db, { config }, {
          studentNumber: chip,
          idNumber: checkDigitedId(terminal.id * 10 + j),
          chipNumber: chip,
          name: "压测学生",
        })).cardAccountId;
      await creditTopUp(db, {
        cardAccountId,
        amount: options.balance,
        method: "load",
        reference: `load-${chip}-${Date.now()}`,
      });
      cards.push({ cardAccountId, chip });
    }
    out.push({ kind: options.kind, terminalId: terminal.id, keyHex: terminal.keyHex, cards });
  }
  // A real deployment's tables have long been analysed by autovacuum; freshly made ones have not,
  // and a plan made now (prepared statements keep theirs) would think them empty.
  await sql`analyze card_accounts, card_chips, ledger_accounts, payment_codes`.execute(db);
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Runs the readers against a server for `seconds`. `rate` is requests per second per reader
 * (0 = as fast as replies come). QR readers need `issueCode` (a fresh 付款码 per payment).
 */
export async function runLoad(options: {
  hostname: string;
  port: number;
  readers: LoadReader[];
  seconds: number;
  rate: number;
  amount: number;
  issueCode?: (cardAccountId: number) => Promise<string>;
  progress?: (line: string) => void;
}): Promise<LoadSummary[]> {
  const kinds = [...new Set(options.readers.map((r) => r.kind))];
  const stats = new Map<
    LoadKind,
    {
      latencies: number[];
      ok: number;
      refused: number;
      failed: number;
      refusals: Record<string, number>;
    }
  >();
  for (const k of kinds) {
    stats.set(k, { latencies: [], ok: 0, refused: 0, failed: 0, refusals: {} });
  }
  // Sequence numbers must be new on every run and above the last run's (PROTOCOL.md §3): ten a
  // second of the clock since 2026, so a run may send up to 10 a reader per second since the
  // last one began (good for 13 years).
  const sequence = (Math.floor(Date.now() / 1000) - 1_767_225_600) * 10 + 1;
  const clients: TerminalClient[] = [];
  // Connected and signed on in groups: the server holds at most 50 connections of one address
  // that have not yet sent an accepted frame (§2.2).
  for (let i = 0; i < options.readers.length; i += 40) {
    clients.push(
      ...await Promise.all(
        options.readers.slice(i, i + 40).map(async (r) => {
          const c = await TerminalClient.connect({
            hostname: options.hostname,
            port: options.port,
            terminalId: r.terminalId,
            key: r.keyHex,
            sequence,
          });
          await c.request({ code: MessageCode.SignOn, firmware: "sim-load" });
          return c;
        }),
      ),
    );
  }
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  let done = 0;
  const ticker = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    options.progress?.(`${s.toFixed(0)}s  ${done} requests  ${(done / s).toFixed(0)}/s`);
  }, 1000);

  async function one(r: LoadReader, c: TerminalClient, i: number): Promise<void> {
    const st = stats.get(r.kind)!;
    const card = r.cards[i % r.cards.length];
    const t0 = performance.now();
    try {
      let status: number;
      if (r.kind === "card") {
        const reply = await c.request({
          code: MessageCode.CardPayment,
          chip: card.chip,
          amount: options.amount,
          password: "",
        });
        status = (reply.message as { status: number }).status;
      } else if (r.kind === "qr") {
        const code = await options.issueCode!(card.cardAccountId);
        const q0 = performance.now();
        const reply = await c.request({
          code: MessageCode.QrPayment,
          paymentCode: code,
          amount: options.amount,
        });
        status = (reply.message as { status: number }).status;
        st.latencies.push(performance.now() - q0);
        tally(st, status);
        return;
      } else {
        const start = await c.request({ code: MessageCode.ShowerStart, chip: card.chip });
        const m = start.message as { status: number; holdId: number };
        status = m.status;
        if (status === Status.Ok) {
          const end = await c.request({ code: MessageCode.ShowerEnd, holdId: m.holdId, units: 10 });
          status = (end.message as { status: number }).status;
        }
      }
      st.latencies.push(performance.now() - t0);
      tally(st, status);
    } catch {
      st.failed++;
    }
  }

  function tally(
    st: { ok: number; refused: number; refusals: Record<string, number> },
    status: number,
  ) {
    done++;
    if (status === Status.Ok) st.ok++;
    else {
      st.refused++;
      const name = statusName(status);
      st.refusals[name] = (st.refusals[name] ?? 0) + 1;
    }
  }

  await Promise.all(options.readers.map(async (r, idx) => {
    const c = clients[idx];
    let i = 0;
    const interval = options.rate > 0 ? 1000 / options.rate : 0;
    let next = performance.now();
    while (performance.now() < deadline && !c.closed) {
      await one(r, c, i++);
      if (interval > 0) {
        next += interval;
        const wait = next - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      }
    }
  }));
  clearInterval(ticker);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.close()));
  return kinds.map((kind) => {
    const st = stats.get(kind)!;
    const sorted = st.latencies.sort((a, b) => a - b);
    const round = (n: number) => Math.round(n * 100) / 100;
    return {
      kind,
      readers: options.readers.filter((r) => r.kind === kind).length,
      seconds: round(seconds),
      ok: st.ok,
      refused: st.refused,
      failed: st.failed,
      perSecond: round(st.ok / seconds),
      p50: round(percentile(sorted, 50)),
      p95: round(percentile(sorted, 95)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[sorted.length - 1] ?? 0),
      refusals: st.refusals,
    };
  });
}

/** A fresh payment code for a card account, for QR load. */
export async function freshPaymentCode(db: Db, cardAccountId: number): Promise<string> {
  return (await issuePaymentCode(db, cardAccountId)).code;
}

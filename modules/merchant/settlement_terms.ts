/**
 * 商户结算's terms of each merchant: whether an outside operator runs it (and is paid by the
 * school), how often it is settled, the management fee the school keeps, where it is paid.
 * Finance sets them (audited); the wallet's statements read them.
 */
import type { Db } from "../platform/database.ts";
import { DomainError } from "../platform/errors.ts";
import { writeAudit } from "../staff/mod.ts";
import type { Actor } from "./terminals.ts";
import "./tables.ts";

/** How often a merchant is settled. */
export type SettlementPeriod = "daily" | "weekly" | "monthly";

export const PERIOD_LABELS: Record<SettlementPeriod, string> = {
  daily: "每日",
  weekly: "每周",
  monthly: "每月",
};

/** A merchant's settlement terms. */
export interface SettlementTerms {
  merchantId: number;
  settles: boolean;
  period: SettlementPeriod;
  /** Basis points of the net (350 = 3.50%). */
  feeRateBp: number;
  payeeName: string | null;
  payeeBank: string | null;
  payeeAccount: string | null;
}

function termsOf(r: {
  merchant_id: number;
  settles: boolean;
  period: SettlementPeriod;
  fee_rate_bp: number;
  payee_name: string | null;
  payee_bank: string | null;
  payee_account: string | null;
}): SettlementTerms {
  return {
    merchantId: r.merchant_id,
    settles: r.settles,
    period: r.period,
    feeRateBp: r.fee_rate_bp,
    payeeName: r.payee_name,
    payeeBank: r.payee_bank,
    payeeAccount: r.payee_account,
  };
}

/** The terms of these merchants (those that have any), by merchant id; every merchant's without ids. */
export async function settlementTerms(
  db: Db,
  merchantIds?: Iterable<number>,
): Promise<Map<number, SettlementTerms>> {
  let q = db.selectFrom("merchant_settlement_terms").selectAll();
  if (merchantIds) {
    const ids = [...new Set(merchantIds)];
    if (ids.length === 0) return new Map();
    q = q.where("merchant_id", "in", ids);
  }
  return new Map((await q.execute()).map((r) => [r.merchant_id, termsOf(r)]));
}

/** Sets a merchant's terms (audited with what they were). */
export async function setSettlementTerms(
  db: Db,
  actor: Actor,
  terms: SettlementTerms,
): Promise<void> {
  if (!Number.isSafeInteger(terms.feeRateBp) || terms.feeRateBp < 0 || terms.feeRateBp > 10_000) {
    throw new DomainError("Bad fee rate", "管理费率需在 0% 到 100% 之间，最多两位小数", "fee_rate");
  }
  await db.transaction().execute(async (trx) => {
    const merchant = await trx.selectFrom("merchants").select("id").where(
      "id",
      "=",
      terms.merchantId,
    )
      .executeTakeFirst();
    if (!merchant) throw new DomainError("No such merchant", "商户不存在", "_form");
    const before = await trx.selectFrom("merchant_settlement_terms").selectAll()
      .where("merchant_id", "=", terms.merchantId).forUpdate().executeTakeFirst();
    const row = {
      settles: terms.settles,
      period: terms.period,
      fee_rate_bp: terms.feeRateBp,
      payee_name: terms.payeeName,
      payee_bank: terms.payeeBank,
      payee_account: terms.payeeAccount,
      updated_at: new Date(),
    };
    await trx.insertInto("merchant_settlement_terms").values({
      merchant_id: terms.merchantId,
      ...row,
    })
      .onConflict((oc) => oc.column("merchant_id").doUpdateSet(row)).execute();
    const shown = (t: SettlementTerms | null) =>
      t && {
        settles: t.settles,
        period: t.period,
        feeRate: `${(t.feeRateBp / 100).toFixed(2)}%`,
        payee: [t.payeeName, t.payeeBank, t.payeeAccount].filter(Boolean).join(" "),
      };
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "merchant.settlement_terms",
      targetType: "merchant",
      targetId: terms.merchantId,
      before: shown(before ? termsOf(before) : null),
      after: shown(terms),
      ip: actor.ip ?? null,
    });
  });
}

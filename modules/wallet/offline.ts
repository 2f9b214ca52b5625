/** Offline readers' payments: facts from before the upload, the one debit that may go below zero. */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import {
  checkReference,
  ensureCardWallet,
  ensureMerchantAccount,
  isNotNullViolation,
  isUniqueViolation,
  joinedOrOwn,
  transferByReference,
} from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { merchantAccountSql, merchantPlaceSql, offlineSql } from "./_rules.ts";
import { debitLegsSql } from "./_purses.ts";
import {
  oneAskSql,
  optionalId,
  type PaymentResult,
  sameRequest,
  unusedReferenceSql,
  withCardLocked,
} from "./ledger.ts";
import type { TransferKind } from "./tables.ts";

/**
 * Records a payment an offline reader accepted without the server: the only path that may take a
 * balance below zero. Takes the lots that may pay at the merchant now, then what is free of holds
 * in cash, and books the rest as overdraft.
 */
export async function applyOfflinePayment(
  db: Db,
  input: {
    cardAccountId: number;
    merchantId: number;
    terminalId: number;
    amount: number;
    reference: string;
    occurredAt: Date;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const terminalId = optionalId(input.terminalId, "terminalId");
  const occurredAt = input.occurredAt instanceof Date && !isNaN(input.occurredAt.getTime())
    ? input.occurredAt.toISOString()
    : null;
  const expect = {
    cardAccountId: input.cardAccountId,
    amount,
    kinds: ["purchase" as TransferKind],
  };
  // An offline record is a fact: the merchant must exist, but may have been deactivated since.
  const counter = merchantAccountSql(sql`${input.merchantId}`, { allowInactive: true });
  // The card's row locked first after a miss: the row changed while the statement ran (_purses.ts).
  let locked = false;
  const statement = async (db: Db) => {
    const result = await sql<{ id: number; balance_after: number; here: number }>`
          with ${
      oneAskSql({
        cardAccountId: sql`${input.cardAccountId}`,
        amount,
        at: merchantPlaceSql(sql`${input.merchantId}`),
        reference,
      })
    }, ${offlineSql({ also: [unusedReferenceSql(reference)] })}, t as (
            insert into ledger_transfers (reference, kind, channel, debit_account_id,
              credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
              terminal_id, details)
            select w.reference, 'purchase', 'offline', w.account_id, ${counter}, w.amount,
              w.card_account_id, -w.amount, w.after, ${input.merchantId}, ${terminalId},
              ${JSON.stringify({ occurredAt })}::jsonb
            from w
            returning id, reference, balance_after
          ), ${debitLegsSql()}
          select t.id, t.balance_after, w.here from t, w`.execute(db);
    return result.rows[0];
  };
  const attempts = async (db: Db, recover: boolean): Promise<PaymentResult> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const row = locked
          ? await withCardLocked(db, input.cardAccountId, statement)
          : await statement(db);
        if (row) {
          return {
            transferId: row.id,
            balanceAfter: row.balance_after,
            balanceHere: row.here,
            duplicate: false,
          };
        }
        const first = await transferByReference(db, reference);
        if (first) return sameRequest(first, expect);
        await ensureCardWallet(db, input.cardAccountId);
        locked = true;
      } catch (err) {
        if (recover && isUniqueViolation(err)) {
          const first = await transferByReference(db, reference);
          if (first) return sameRequest(first, expect);
          continue;
        }
        if (recover && isNotNullViolation(err)) {
          await ensureMerchantAccount(db, input.merchantId, { allowInactive: true });
          continue;
        }
        throw err;
      }
    }
    throw new Error(`Cannot apply offline payment ${reference}: gave up after repeated conflicts`);
  };
  return await joinedOrOwn(db, {
    joined: (trx) => attempts(trx, false),
    own: (own) => attempts(own, true),
  });
}

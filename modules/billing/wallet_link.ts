import type { Db } from "../platform/database.ts";
import {
  getBalance,
  InsufficientFundsError,
  NegativeBalanceError,
  payUtility,
  refundUtility,
} from "../wallet/mod.ts";
import type { UtilityMoney } from "./delivery.ts";

/** Billing's money moves, through the wallet's public API only. */
export const walletMoney: UtilityMoney = {
  async pay(db, input) {
    const r = await payUtility(db, input);
    return { transferId: r.transferId, balanceAfter: r.balanceAfter };
  },
  async refund(db, input) {
    const r = await refundUtility(db, input);
    return { transferId: r.transferId };
  },
  isInsufficientFunds(err) {
    return err instanceof InsufficientFundsError || err instanceof NegativeBalanceError;
  },
};

/** The card balance a student can spend now (available: balance minus holds). */
export async function cardBalance(db: Db, cardAccountId: number): Promise<number> {
  return (await getBalance(db, cardAccountId)).available;
}

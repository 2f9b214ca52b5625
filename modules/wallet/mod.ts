/**
 * 钱包 (wallet): the double-entry ledger, balances, holds, payment codes, and the student pages
 * 余额 / 交易记录 / 付款码. Money moves only through the functions below.
 *
 * Rules every call keeps:
 * - Amounts are integer fen > 0 (at most ¥1,000,000); anything else is `InvalidAmountError`.
 * - Every call that moves money takes a unique `reference` (a reader's terminal+sequence, a
 *   gateway's order number, a form's one-time token, …; at most 128 characters) and is idempotent
 *   on it: a retry returns the first result with `duplicate: true` and moves nothing. The same
 *   reference with a different request (other card or amount) is `ReferenceConflictError`.
 * - Every debit of a card obeys one rule (_rules.ts, the one place to change it): refused while
 *   an offline overdraft makes the balance negative, then (card and code payments only) above the
 *   holder's per-payment or daily limit, then above what is available where it is spent (the cash
 *   purse less holds, plus the 补助 lots that may be spent there). Every path composes it and
 *   explains a refusal by it, so each gives the same reason for the same card (rules_test.ts).
 *   Credits pay off an overdraft first.
 * - Purses (the purse rule, _purses.ts): a card's money is cash and lots of 补助 (or another purse
 *   kind, data in `purse_kinds`). A payment draws the lots that may be spent at its merchant's
 *   category (or "utilities") first, the soonest to expire first, then cash; one payment may take
 *   from both. Refunds and reversals go back to the purses that paid; money back to a gateway,
 *   adjustments and 销户's cash go to and from cash only; lots go back to their funding account
 *   when they expire, are reversed or the card is closed. `getBalance(db, id, at)` is what a
 *   place sees; `PaymentResult.balanceHere` what a reader shows after a payment.
 * - Refusals are `WalletError` subclasses (errors.ts) with a stable `code` for readers and a
 *   Chinese `userMessage` for pages.
 * - The wallet does not look at a card's loss status: readers check the chip with the card module
 *   first (`findCardByChip`). A payment code keeps working after a loss report unless the student
 *   froze it (付款码设置) or froze it with the loss (`card_accounts.payment_code_frozen`).
 * - A card account that never received money has no wallet row: it reads as balance 0 and is
 *   refused with `InsufficientFundsError`.
 * - Calls may run inside the caller's Kysely transaction (e.g. to `writeAudit` in the same
 *   commit); there, a concurrent duplicate of the same reference aborts the caller's transaction
 *   with the database's unique violation, and the caller retries.
 *
 * For the top-up and finance engineer: `creditTopUp` once per gateway order (the gateway order
 * number as reference; a top-up first pays off an offline overdraft); `refundTransfer` for
 * purchases and showers, partial or full, never more than the original in total (reversals count);
 * `adjustBalance` with +/- amount after the checker approves; `listNegativeBalances` for the
 * overdraft list; `verifyLedger` for the books; `listTransfers` (search a payment to refund, with
 * what was already returned) and `dailyMerchantTotals` (per day, merchant, terminal) for reports,
 * rather than reading wallet tables.
 */
import "./tables.ts";

export type { Channel, TransferKind } from "./tables.ts";
export * from "./errors.ts";
/** The largest amount any call moves (¥1,000,000): the one home of that bound (_rules.ts). */
export { MAX_AMOUNT } from "./_amounts.ts";

/**
 * `getBalance(db, cardAccountId)` → `{ balance, held, available }`; `payFromCard` debits a card
 * for a merchant (per-payment and daily limits, refused while the balance is negative);
 * `payUtility` / `refundUtility` for dorm utilities; `applyOfflinePayment` (the only path below
 * zero) and `listNegativeBalances`; `reverseByReference` for a reader's lost reply (leaves a
 * tombstone when the original has not arrived); `creditTopUp`, `refundTransfer`, `adjustBalance`;
 * `refundTopUp` / `returnTopUpRefund` for a top-up paid back through its gateway.
 */
export {
  type Balance,
  balanceAtMerchant,
  getBalance,
  listNegativeBalances,
  type PaymentResult,
} from "./ledger.ts";
export {
  adjustBalance,
  creditTopUp,
  payFromCard,
  payUtility,
  refundTopUp,
  returnTopUpRefund,
} from "./payments.ts";
export { applyOfflinePayment } from "./offline.ts";
export {
  refundTransfer,
  refundUtility,
  type ReversalResult,
  reverseByReference,
} from "./refunds.ts";
/**
 * Group commit: `payFromCardsRecorded` runs many readers' card payments (`payFromCard`'s checks)
 * with their records as one statement (one round trip and one commit for all); each payment that
 * did not pay returns null, and the caller falls back to `payFromCard`, which says why.
 * `redeemPaymentCodesRecorded` (below) does the same for 付款码 payments.
 */
export { type BatchPayment, payFromCardsRecorded } from "./batch.ts";

/**
 * Shower pre-authorisations: `holdFunds` (authorises up to the amount, down to what is available,
 * refused below ¥1), `settleHold` (idempotent; a late settle after a timeout charges once, only
 * from what is available then), `releaseHold`, `expireHolds(db, now)` (main.ts runs it in a loop).
 * `holdFundsRecorded` / `settleHoldRecorded`: a shower controller's common case with the caller's
 * records in one statement (null when it is not the common case: the caller falls back).
 */
export {
  activeHolds,
  expireHolds,
  holdFunds,
  type HoldResult,
  MIN_HOLD,
  releaseHold,
  settleHold,
  type SettleResult,
} from "./holds.ts";
export {
  type HeldRecorded,
  holdFundsRecorded,
  type SettledRecorded,
  settleHoldRecorded,
} from "./holds_recorded.ts";

/**
 * 付款码: `redeemPaymentCode` for readers (exactly once per code; `redeemPaymentCodesRecorded`
 * many readers' redemptions with their records in one statement, null where one did not pay),
 * `onPaymentCodeRedeemed` for
 * in-process listeners, `isPaymentCodeShape` (18 digits starting 88, Luhn check digit) so a reader
 * can tell our codes from WeChat/Alipay/UnionPay ones; issuing and settings for the pages.
 */
export {
  CODE_PREFIX,
  type CodeRedeemed,
  isPaymentCodeShape,
  issuePaymentCode,
  onPaymentCodeRedeemed,
} from "./codes.ts";
export {
  type CodeRedemption,
  redeemPaymentCode,
  redeemPaymentCodesRecorded,
  type RedeemResult,
} from "./redeem.ts";
export { getPaySettings, type PaySettings, updatePaySettings } from "./pay_settings.ts";

/**
 * 离线付款码 (docs/OFFLINE_PAYMENT_CODES.md): `isOfflineCodeShape` (18 digits starting 87, Luhn
 * check digit); `redeemOfflineCode` for a reader's QrPayment (verified from the code at the
 * server's time, once per device and time step, the offline limits first); `applyOfflineCodePayment`
 * for a reader's offline record of a code (verified at the time it was paid, charged even below
 * zero, or refused with the reason for finance's review); `syncDevice` for the page's check-in.
 */
export { isOfflineCodeShape } from "./offline_codes.ts";
export {
  applyOfflineCodePayment,
  type OfflineCodeCharge,
  redeemOfflineCode,
} from "./offline_redeem.ts";
export { type DeviceSync, syncDevice } from "./device_checkin.ts";

/**
 * 补助 lots: `subsidyFundingAccount` (a school's 补助资金), `grantLots` (a batch's grants, in the
 * caller's transaction, idempotent per reference), `reverseGrant` (one card's grant undone by a
 * new transfer), `expireLots` (one round of the expiry worker, audited), `listPurseKinds`,
 * `lotsEndingBy` (the lots' ends read as a clock, for 补助即将到期) and `lotsOfGrants`; the pages'
 * reads: `purseLines` (a card's purses), `lotTotalsByBatch`, `lotsOfBatch`, and the place of a
 * utility payment (`UTILITIES`).
 */
export {
  expireLots,
  GrantError,
  grantLots,
  type GrantTerms,
  listPurseKinds,
  type LotEnding,
  type LotReturn,
  lotsEndingBy,
  lotsOfGrants,
  type PurseKind,
  reverseGrant,
  subsidyFundingAccount,
} from "./lots.ts";
export {
  type BatchLot,
  lotsOfBatch,
  type LotTotals,
  lotTotalsByBatch,
  type PurseLine,
  purseLines,
  type TransferSplit,
} from "./purses.ts";
export { type SpendAt, UTILITIES } from "./_rules.ts";

/**
 * 商户结算: a merchant's movements for its statements (`merchantMovements`), what each merchant is
 * owed (`merchantBalances`), a statement's payout and fee booked once (`payMerchantStatement`),
 * and what the ledger holds of each statement's payment (`settlementTransfers`, for the check).
 */
export {
  merchantBalances,
  merchantMovements,
  payMerchantStatement,
  settlementTransfers,
} from "./settlement.ts";

/** The ledger verifier: each rule of the books that a corrupted row can break (verify.ts). */
export { type LedgerCheck, type LedgerReport, verifyLedger } from "./verify.ts";

/** 余额, 交易记录, 付款码, 付款码设置 (mount at "/") and the staff 账务核验 page (mount at "/admin/ledger"). */
export { ledgerAdminRoutes, walletRoutes } from "./routes.ts";
/**
 * 销户 at the counter: the balance paid out in cash, the card account closed (card's side);
 * `closeCardDeciding` for a close whose money's fate is chosen from the wallet row locked in it.
 */
export {
  CannotCloseError,
  closeCardDeciding,
  closeCardWithPayout,
  type ClosedMoney,
  closingState,
  payOutClosedCard,
} from "./close.ts";
/** 毕业离校's preview: `closingState`'s money of many cards at once. */
export { type ClosingMoney, closingMoney } from "./closing_money.ts";
export { cardClosingRoutes } from "./close_routes.ts";

/**
 * The background loop that releases timed-out holds and sends expired 补助 back (`expireLots`);
 * main.ts registers its stop with onShutdown.
 */
export { startHoldExpiryLoop } from "./loop.ts";

/** 交易记录 queries, also for other modules' pages that show a card's movements. */
export {
  getTransaction,
  HISTORY_TYPES,
  KIND_LABELS,
  listTransactions,
  spendingTotals,
} from "./history.ts";

/** Demo opening balances (调账 transfers) and last month's takings of the outsourced window. */
export { seedDemoTakings, seedDemoWallet } from "./demo.ts";

/** For finance: transfers with what was already refunded, and daily totals per merchant and terminal. */
export {
  type DailyMerchantRow,
  dailyMerchantTotals,
  listTransfers,
  type TransferView,
} from "./reports.ts";

/**
 * Card transfers committed after a feed position, in commit-safe order (platform/feed.ts): what the
 * notifier turns into 消费提醒, 充值到账, 退款到账 and 余额不足.
 */
export { cardTransfersAfter, type FeedTransfer } from "./feed.ts";

/** Other modules' labels for their transfers in 交易记录 (main.ts registers billing's). */
export { registerTransferLabeler, type TransferLabel, type TransferLabeler } from "./labels.ts";

/** 一卡通账户: card accounts, chips, card passwords, loss and reissue, the readers' blocklist. */
import "./tables.ts";

export type { CardKind, CardStatus, ChipStatus } from "./tables.ts";
/**
 * The card bound to a login account, and a chip as a reader sees it (`payableChipSql`: the same
 * check as SQL, for a reader's payment in one statement); `paymentCodeFrozenSql`, a code frozen
 * with a loss report, for the wallet's redemption statement (both listed hot-path exceptions,
 * modules/walls_sql_test.ts).
 */
export {
  type BoundCard,
  cardHoldersByIds,
  type ChipCard,
  findBoundCard,
  findCardAccount,
  findCardByChip,
  findCardsByStudentNumber,
  payableChipKey,
  payableChipOfSql,
  payableChipSql,
  paymentCodeFrozenSql,
} from "./repository.ts";
/** `findBoundCard` with the caller's own columns in the same statement (hot pages such as 余额). */
export { boundCardSql, findBoundCardWith, readBoundCard } from "./bound.ts";
/** Card-password checks with the 5-tries, 30-minute lockout (web pages and readers alike). */
export {
  CARD_PASSWORD_RULE,
  type CardDeps,
  type CardPasswordCheck,
  cardPasswordFailureMessage,
  cardPasswordLockedFor,
  checkCardPassword,
} from "./passwords.ts";
/**
 * The readers' versioned blocklist, whether a chip was listed at a moment (`blocklistedAt`, for
 * offline records), and its in-process change notification.
 */
export {
  type BlocklistDelta,
  blocklistedAt,
  blocklistSince,
  currentBlocklistVersion,
  onBlocklistChange,
} from "./blocklist.ts";
/** The holder's operations in 安全中心: 绑定, the card password, 挂失 and 解挂. */
export { bindCard } from "./bind.ts";
export { changeCardPassword, liftLoss, reportLoss } from "./holder.ts";
/**
 * The card office's counter operations (each audited); `checkTypedStudentNumber`, the 学号 typed
 * to confirm a dangerous one (解绑, 销户).
 */
export {
  changeCardType,
  checkTypedStudentNumber,
  closeCardAccount,
  reissueCard,
  resetCardPassword,
  type StaffActor,
  staffLiftLoss,
  staffReportLoss,
  unbindCard,
  unlockCardPassword,
} from "./counter.ts";
/** Demo cardholders and builders for other modules' tests. */
export {
  bindCardForTest,
  createCardAccountForTest,
  DEMO_BOUND_PHONE,
  DEMO_CARDHOLDERS,
  DEMO_SCHOOL,
  type NewCardAccount,
  seedDemoCards,
} from "./fixtures.ts";
/**
 * Card events committed after a feed position (platform/feed.ts), for security notices; the login
 * account each card is bound to (whom its notices go to).
 */
export { accountsOfCards, cardEventsAfter, type FeedCardEvent } from "./feed.ts";
/** 毕业离校: a graduating class's open cards and the notice to their holders. */
export {
  cardsForCloseout,
  type CloseoutCard,
  type CloseoutCriteria,
  MAX_CLOSEOUT_CARDS,
  noticeCloseout,
} from "./closeout.ts";
/** Format rules of 学号, 芯片卡号 and 身份证 numbers. */
/** Cards named by 学号 in a school, closed ones too (补助发放's rows, refused with the reason). */
export { cardsByStudentNumbers, type RosterCard } from "./roster.ts";
export { parseChipNumber, parseIdNumber, parseStudentNumber } from "./rules.ts";
/** Student pages (mount at /security) and the card office console (mount at /admin/cards). */
export { cardRoutes } from "./routes.ts";
export { cardAdminRoutes } from "./admin_routes.ts";
/** 卡类别 and 餐次 pages (mount at /admin/card-types and /admin/meal-periods). */
export { cardTypeRoutes, mealPeriodRoutes } from "./admin_types.ts";
/**
 * 卡类别: the types a card account refers to (limits, 补助, price rules), the open cards of a
 * type (补助发放), the 付款设置 ceilings of a card; the system administrator's changes (audited).
 */
export {
  cardCountsByType,
  cardLimitCeilings,
  cardsOfType,
  type CardType,
  type CardTypeInput,
  cardTypeLimitSql,
  deleteCardType,
  type Discount,
  findCardType,
  listCardTypes,
  PRICED_CATEGORIES,
  type PricedCategory,
  saveCardType,
} from "./types.ts";
/** 餐次: a canteen's meal periods with their caps and discounts by card type (audited changes). */
export {
  deleteMealPeriod,
  listMealPeriods,
  type MealPeriod,
  type MealPeriodInput,
  saveMealPeriod,
  seedDemoMealPeriods,
} from "./meal_periods.ts";
/**
 * The price in force of a reader's list price (卡类别 and 餐次 rules) as SQL for the wallet's
 * debit statements (a listed hot-path door, modules/walls_sql_test.ts), and read on its own.
 */
export {
  type AppliedPrice,
  chinaTimeOfDay,
  type PriceInForce,
  priceInForce,
  priceInForceSql,
} from "./pricing.ts";

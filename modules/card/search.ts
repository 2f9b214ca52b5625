/** The card office's search: one box for 学号, name, chip number or the bound 手机号. */
import type { Db } from "../platform/database.ts";
import { type Paging, paging } from "../platform/listing.ts";
import { findAccountByPhone } from "../account/mod.ts";
import { type CardSearchRow, findBoundCard, searchCards } from "./repository.ts";

/**
 * Card accounts matching the text (repository.ts: searchCards), or the one bound to a 手机号: page
 * `page` of them (the last when past the end) or all of them with `ALL_ROWS`, and the count.
 */
export async function findCardsForStaff(
  db: Db,
  text: string,
  page: number | Paging | undefined,
): Promise<{ rows: CardSearchRow[]; total: number; paging: Paging }> {
  if (!text) return { rows: [], total: 0, paging: paging(1, 0) };
  const ids: number[] = [];
  if (/^\d{11}$/.test(text)) {
    const account = await findAccountByPhone(db, text);
    const card = account ? await findBoundCard(db, account.id) : null;
    if (card) ids.push(card.cardAccountId);
  }
  if (typeof page === "object") return { ...await searchCards(db, text, ids, page), paging: page };
  // The count first, so a page past the end is the last one.
  const { total } = await searchCards(db, text, ids, { offset: 0, perPage: 0 });
  const p = paging(page, total);
  return { rows: (await searchCards(db, text, ids, p)).rows, total, paging: p };
}

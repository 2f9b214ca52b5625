/** The card office's search: one box for 学号, name, chip number or the bound 手机号. */
import type { Db } from "../platform/database.ts";
import { findAccountByPhone } from "../account/mod.ts";
import { type CardSearchRow, findBoundCard, searchCards } from "./repository.ts";

/** Card accounts matching the text (repository.ts: searchCards), or the one bound to a 手机号. */
export async function findCardsForStaff(db: Db, text: string): Promise<CardSearchRow[]> {
  if (!text) return [];
  const ids: number[] = [];
  if (/^\d{11}$/.test(text)) {
    const account = await findAccountByPhone(db, text);
    const card = account ? await findBoundCard(db, account.id) : null;
    if (card) ids.push(card.cardAccountId);
  }
  return await searchCards(db, text, ids);
}

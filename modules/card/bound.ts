import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import type { BoundCard } from "./repository.ts";
import type { CardStatus } from "./tables.ts";
import "./tables.ts";

/** The card columns of `boundCardSql` (prefixed, so the caller's own columns can sit beside). */
export interface BoundCardColumns {
  card_id: number | null;
  card_school_id: number | null;
  card_student_number: string | null;
  card_name: string | null;
  card_status: CardStatus | null;
  card_password_is_default: boolean | null;
  card_payment_code_frozen: boolean | null;
  card_chip_number: string | null;
}

/**
 * SQL for the bound card of a login account (`accountId` may itself be SQL, e.g. the subject of
 * a session) together with the caller's own columns, for a hot page that reads everything in one
 * statement: `extra` gets SQL for the card account's id and returns a subquery yielding at most
 * one row; its columns (names not starting with `card_`) sit beside the card's, null when it
 * yields none. Yields no row without a bound card. Same card and chip as `findBoundCard`.
 */
export function boundCardSql<T extends Record<string, unknown>>(
  accountId: RawBuilder<number>,
  extra: (cardAccountId: RawBuilder<number>) => RawBuilder<T>,
): RawBuilder<BoundCardColumns & { [K in keyof T]: T[K] | null }> {
  // The account's card with its chip that is not cancelled (at most one, by the unique index
  // card_chips_one_current).
  return sql`select ca.id as card_id, ca.school_id as card_school_id,
      ca.student_number as card_student_number, ca.name as card_name, ca.status as card_status,
      ca.password_hash is null as card_password_is_default,
      ca.payment_code_frozen as card_payment_code_frozen, cc.chip_number as card_chip_number, x.*
    from card_accounts ca
    left join card_chips cc on cc.card_account_id = ca.id and cc.status <> 'cancelled'
    left join lateral (${extra(sql<number>`ca.id`)}) x on true
    where ca.account_id = ${accountId}
    limit 1`;
}

/** The bound card and the caller's columns of a `boundCardSql` row; null when there is no card. */
export function readBoundCard<T extends Record<string, unknown>>(
  row: (BoundCardColumns & T) | null | undefined,
): { card: BoundCard; extra: T } | null {
  if (!row || row.card_id === null) return null;
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) if (!k.startsWith("card_")) rest[k] = v;
  return {
    card: {
      cardAccountId: row.card_id,
      schoolId: row.card_school_id!,
      studentNumber: row.card_student_number!,
      name: row.card_name!,
      status: row.card_status!,
      activeChipNumber: row.card_chip_number ?? null,
      passwordIsDefault: row.card_password_is_default!,
      paymentCodeFrozen: row.card_payment_code_frozen!,
    },
    extra: rest as T,
  };
}

/**
 * `findBoundCard` together with the caller's own columns in one round trip (see `boundCardSql`).
 * Runs prepared on PostgreSQL, so `extra` must build the same text on every call.
 */
export async function findBoundCardWith<T extends Record<string, unknown>>(
  db: Db,
  accountId: number,
  extra: (cardAccountId: RawBuilder<number>) => RawBuilder<T>,
): Promise<{ card: BoundCard; extra: { [K in keyof T]: T[K] | null } } | null> {
  if (!Number.isSafeInteger(accountId) || accountId <= 0) return null;
  const { rows: [row] } = await sql<BoundCardColumns & { [K in keyof T]: T[K] | null }>`${
    sql.raw(PREPARED)
  }${boundCardSql(sql<number>`${accountId}`, extra)}`.execute(db);
  return readBoundCard(row);
}

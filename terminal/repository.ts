/** Queries of the terminal module's own tables. */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../modules/platform/database.ts";
import type { Message } from "./messages.ts";
import { type BodySlot, bodySlot } from "./serializer.ts";
import "./tables.ts";

export interface StoredRequest {
  type: number;
  request: Uint8Array;
  status: number;
  reply_type: number;
  reply_timestamp: number;
  reply: Uint8Array;
}

/** The recorded request and reply of (terminal, sequence), or null. */
export async function findRequest(
  db: Db,
  terminalId: number,
  sequence: number,
): Promise<StoredRequest | null> {
  return (await db.selectFrom("terminal_requests")
    .select(["type", "request", "status", "reply_type", "reply_timestamp", "reply"])
    .where("terminal_id", "=", terminalId).where("sequence", "=", sequence).executeTakeFirst()) ??
    null;
}

/** A handled request's record (for `recordPaidRequestsSql` the reply's balance is filled in). */
export interface PaidRequestRow {
  terminalId: number;
  sequence: number;
  type: number;
  request: Uint8Array;
  status: number;
  replyType: number;
  replyTimestamp: number;
  reply: Uint8Array;
  amount: number;
}

/** Records a handled request; false when (terminal, sequence) was already recorded (a race). */
export async function saveRequest(
  db: Db,
  row: PaidRequestRow & { cardAccountId: number | null },
): Promise<boolean> {
  const inserted = await db.insertInto("terminal_requests").values({
    terminal_id: row.terminalId,
    sequence: row.sequence,
    type: row.type,
    request: row.request,
    status: row.status,
    reply_type: row.replyType,
    reply_timestamp: row.replyTimestamp,
    reply: row.reply,
    amount: row.amount,
    card_account_id: row.cardAccountId,
  }).onConflict((oc) => oc.columns(["terminal_id", "sequence"]).doNothing()).returning("sequence")
    .executeTakeFirst();
  return inserted !== undefined;
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

/**
 * A reply body (SQL bytea) with `value` written into `slot`, as the serializer places it: a
 * number outside the slot's range fails the cast, so the statement writes nothing and the caller
 * takes the ordinary path.
 */
function filledSql(
  reply: RawBuilder<unknown>,
  slot: BodySlot,
  value: RawBuilder<unknown>,
): RawBuilder<unknown> {
  const bytes = slot.bytes === 8
    ? sql`int8send(${value}::bigint)`
    : sql`int4send(${value}::integer)`;
  return sql`overlay(${reply} placing ${bytes} from ${
    slot.offset + 1
  }::integer for ${slot.bytes}::integer)`;
}

/**
 * The records of a batch of paid requests (`payFromCardsRecorded`) as an `insert … select …` from
 * `paid`: `rows[i]` is recorded when `paid` has a row with `ord = i + 1`, its `balance_after`
 * written into the reply body at `balance` (the serializer's slot of the reply's balance). A
 * (terminal, sequence) already recorded aborts the whole statement, money included. The statement
 * text is the same for any number of rows (arrays, not one placeholder per row).
 */
export function recordPaidRequestsSql(
  rows: PaidRequestRow[],
  balance: BodySlot,
  paid: RawBuilder<unknown>,
): RawBuilder<unknown> {
  const col = <T>(f: (r: PaidRequestRow) => T) => rows.map(f);
  return sql`insert into terminal_requests (terminal_id, sequence, type, request, status,
      reply_type, reply_timestamp, reply, amount, card_account_id)
    select r.terminal_id, r.sequence, r.type, decode(r.request, 'hex'), r.status, r.reply_type,
      r.reply_timestamp, ${
    filledSql(sql`decode(r.reply, 'hex')`, balance, sql`${paid}.balance_after`)
  },
      r.amount, ${paid}.card_account_id
    from ${paid} join unnest(${col((r) => r.terminalId)}::bigint[],
      ${col((r) => r.sequence)}::bigint[], ${col((r) => r.type)}::smallint[],
      ${col((r) => hex(r.request))}::text[], ${col((r) => r.status)}::integer[],
      ${col((r) => r.replyType)}::smallint[], ${col((r) => r.replyTimestamp)}::bigint[],
      ${col((r) => hex(r.reply))}::text[], ${col((r) => r.amount)}::bigint[])
      with ordinality as r(terminal_id, sequence, type, request, status, reply_type,
        reply_timestamp, reply, amount, ord)
      on r.ord = ${paid}.ord`;
}

/**
 * True when the batch's request at `ord` (1-based position in `rows`) has no record yet: for a
 * batch statement's conditions, so that a request answered before (refused, then retried once the
 * card could pay) is left out on its own instead of failing the whole batch on its record.
 */
export function unrecordedSql(
  rows: Array<{ terminalId: number; sequence: number }>,
  ord: RawBuilder<number>,
): RawBuilder<boolean> {
  return sql<boolean>`not exists (select 1 from terminal_requests tr
    where tr.terminal_id = (${rows.map((r) => r.terminalId)}::bigint[])[${ord}::integer]
      and tr.sequence = (${rows.map((r) => r.sequence)}::bigint[])[${ord}::integer])`;
}

/** Money-moving requests of a terminal, newest first. */
export async function listRequests(db: Db, terminalId: number, limit: number) {
  return await db.selectFrom("terminal_requests").select([
    "sequence",
    "type",
    "status",
    "amount",
    "created_at",
  ])
    .where("terminal_id", "=", terminalId).orderBy("created_at", "desc").orderBy("sequence", "desc")
    .limit(limit)
    .execute();
}

/** The highest contiguous offline sequence applied for a terminal (0 before any). */
export async function offlineAcked(db: Db, terminalId: number): Promise<number> {
  const row = await db.selectFrom("terminal_offline_state").select("acked_sequence")
    .where("terminal_id", "=", terminalId).executeTakeFirst();
  return row?.acked_sequence ?? 0;
}

/** Records one acknowledged offline record (its result and charge) and moves the ack forward. */
export async function saveOfflineRecord(
  db: Db,
  row: {
    terminalId: number;
    offlineSequence: number;
    occurredAt: Date;
    chip: string;
    amount: number;
    cardAccountId: number | null;
    /** "applied" (charged) or "held" (refused, sent to finance's review). */
    outcome: "applied" | "held";
    /** The per-record status the reader is told. */
    result: number;
    /** Fen charged: the amount when applied, else 0. */
    charged: number;
    balanceAfter: number | null;
  },
): Promise<void> {
  await db.insertInto("terminal_offline_records").values({
    terminal_id: row.terminalId,
    offline_sequence: row.offlineSequence,
    occurred_at: row.occurredAt,
    chip: row.chip,
    amount: row.amount,
    card_account_id: row.cardAccountId,
    outcome: row.outcome,
    result: row.result,
    charged: row.charged,
    balance_after: row.balanceAfter,
  }).onConflict((oc) => oc.columns(["terminal_id", "offline_sequence"]).doNothing()).execute();
  await db.insertInto("terminal_offline_state").values({
    terminal_id: row.terminalId,
    acked_sequence: row.offlineSequence,
  })
    .onConflict((oc) =>
      oc.column("terminal_id").doUpdateSet({
        acked_sequence:
          sql`greatest(terminal_offline_state.acked_sequence, excluded.acked_sequence)`,
      })
    ).execute();
}

/** The results recorded for acknowledged offline records of a terminal, by offline sequence. */
export async function offlineResults(
  db: Db,
  terminalId: number,
  sequences: number[],
): Promise<Map<number, { result: number; charged: number }>> {
  if (sequences.length === 0) return new Map();
  const rows = await db.selectFrom("terminal_offline_records")
    .select(["offline_sequence", "result", "charged"])
    .where("terminal_id", "=", terminalId).where("offline_sequence", "in", sequences).execute();
  return new Map(
    rows.map((r) => [Number(r.offline_sequence), {
      result: r.result,
      charged: Number(r.charged),
    }]),
  );
}

/**
 * What a reader held when it accepted an offline record at `at`: the records after the last one
 * acknowledged by then (`from` exclusive; only records at or below `ackedBefore`, the ack when
 * this upload began, can have been acknowledged before it), and the fen charged for them so far.
 */
export async function offlineHeldAt(
  db: Db,
  input: { terminalId: number; at: Date; ackedBefore: number },
): Promise<{ from: number; charged: number }> {
  const row = await sql<{ from: string | number; charged: string | number }>`
    with l as (
      select coalesce(max(offline_sequence), 0) as seq from terminal_offline_records
      where terminal_id = ${input.terminalId} and offline_sequence <= ${input.ackedBefore}
        and created_at <= ${input.at}
    )
    select l.seq as from, coalesce((select sum(charged) from terminal_offline_records r
      where r.terminal_id = ${input.terminalId} and r.offline_sequence > l.seq), 0) as charged
    from l`.execute(db);
  return { from: Number(row.rows[0].from), charged: Number(row.rows[0].charged) };
}

/** Remembers that a reader said it holds blocklist `version` (first time only). */
export async function saveBlocklistAck(
  db: Db,
  terminalId: number,
  version: number,
): Promise<void> {
  await db.insertInto("terminal_blocklist_acks").values({ terminal_id: terminalId, version })
    .onConflict((oc) => oc.columns(["terminal_id", "version"]).doNothing()).execute();
}

/** Whether the reader had said it holds `version` or a later one at or before `at`. */
export async function heldBlocklistVersion(
  db: Db,
  input: { terminalId: number; version: number; at: Date },
): Promise<boolean> {
  const row = await db.selectFrom("terminal_blocklist_acks").select("version")
    .where("terminal_id", "=", input.terminalId).where("version", ">=", input.version)
    .where("acknowledged_at", "<=", input.at).limit(1).executeTakeFirst();
  return row !== undefined;
}

/** Remembers a started shower: its hold, and the tariff it will be charged at. */
export async function saveShower(
  db: Db,
  row: {
    holdId: number;
    terminalId: number;
    sequence: number;
    cardAccountId: number;
    tariffId: number;
    fenPerUnit: number;
  },
): Promise<void> {
  await db.insertInto("terminal_showers").values({
    hold_id: row.holdId,
    terminal_id: row.terminalId,
    start_sequence: row.sequence,
    card_account_id: row.cardAccountId,
    tariff_id: row.tariffId,
    fen_per_unit: row.fenPerUnit,
  }).onConflict((oc) => oc.column("hold_id").doNothing()).execute();
}

/** A shower started by this terminal, by hold id. */
export async function findShower(db: Db, terminalId: number, holdId: number) {
  return (await db.selectFrom("terminal_showers").select([
    "hold_id",
    "card_account_id",
    "fen_per_unit",
  ])
    .where("hold_id", "=", holdId).where("terminal_id", "=", terminalId).executeTakeFirst()) ??
    null;
}

/** A number field of a reply body filled in by SQL: where the serializer writes it, and from what. */
export interface ReplyField {
  slot: BodySlot;
  /** A column of the statement's source row. */
  column: string;
}

/** The fields of `reply` named in `columns` (field → source column), placed by the serializer. */
export function replyFields(reply: Message, columns: Record<string, string>): ReplyField[] {
  return Object.entries(columns).map(([field, column]) => ({
    slot: bodySlot(reply, field),
    column,
  }));
}

/**
 * The record of a handled request as an `insert … select … from ${source}` for a wallet
 * statement that moves money and records it in one round trip (`holdFundsRecorded`,
 * `settleHoldRecorded`, `redeemPaymentCodeRecorded`): `fields` of the reply are written from
 * `source`'s columns, as is the card account, and the amount (a column, or the request's own). A
 * value outside the field's range fails the cast, so the statement writes nothing and the caller
 * takes the ordinary path. A plain insert: a (terminal, sequence) already recorded aborts the
 * whole statement, money included.
 */
export function recordRequestSql(
  row: {
    terminalId: number;
    sequence: number;
    type: number;
    request: Uint8Array;
    status: number;
    replyType: number;
    replyTimestamp: number;
    reply: Uint8Array;
  },
  source: RawBuilder<unknown>,
  fill: { fields: ReplyField[]; amount: string | number; cardAccountId: string },
): RawBuilder<unknown> {
  const col = (name: string) => sql`${source}.${sql.ref(name)}`;
  let reply: RawBuilder<unknown> = sql`${row.reply}::bytea`;
  for (const f of fill.fields) reply = filledSql(reply, f.slot, col(f.column));
  return sql`insert into terminal_requests (terminal_id, sequence, type, request, status,
      reply_type, reply_timestamp, reply, amount, card_account_id)
    select ${row.terminalId}::bigint, ${row.sequence}::bigint, ${row.type}::smallint,
      ${row.request}::bytea, ${row.status}::integer, ${row.replyType}::smallint,
      ${row.replyTimestamp}::bigint, ${reply},
      ${typeof fill.amount === "number" ? sql`${fill.amount}` : col(fill.amount)}::bigint,
      ${col(fill.cardAccountId)}
    from ${source}`;
}

/** A handled request's record, its reply to be filled in by SQL (`recordRequestsSql`). */
export type RequestRow = Omit<PaidRequestRow, "amount">;

/**
 * The records of many handled requests as one `insert … select … from ${source}` (a wallet batch
 * statement that moves their money): `rows[i]` is recorded when `source` has a row with
 * `ord = i + 1`, `fields` of its reply written from that row's columns, as are the card account
 * and the amount. A value outside a field's range fails the cast, so the statement writes nothing
 * and every request takes the ordinary path; so does a (terminal, sequence) already recorded.
 * The statement text is the same for any number of rows (arrays, not one placeholder per row).
 */
export function recordRequestsSql(
  rows: RequestRow[],
  source: RawBuilder<unknown>,
  fill: { fields: ReplyField[]; amount: string; cardAccountId: string },
): RawBuilder<unknown> {
  const col = (name: string) => sql`${source}.${sql.ref(name)}`;
  const of = <T>(f: (r: RequestRow) => T) => rows.map(f);
  let reply: RawBuilder<unknown> = sql`decode(r.reply, 'hex')`;
  for (const f of fill.fields) reply = filledSql(reply, f.slot, col(f.column));
  return sql`insert into terminal_requests (terminal_id, sequence, type, request, status,
      reply_type, reply_timestamp, reply, amount, card_account_id)
    select r.terminal_id, r.sequence, r.type, decode(r.request, 'hex'), r.status, r.reply_type,
      r.reply_timestamp, ${reply}, ${col(fill.amount)}::bigint, ${col(fill.cardAccountId)}
    from ${source} join unnest(${of((r) => r.terminalId)}::bigint[],
      ${of((r) => r.sequence)}::bigint[], ${of((r) => r.type)}::smallint[],
      ${of((r) => hex(r.request))}::text[], ${of((r) => r.status)}::integer[],
      ${of((r) => r.replyType)}::smallint[], ${of((r) => r.replyTimestamp)}::bigint[],
      ${of((r) => hex(r.reply))}::text[])
      with ordinality as r(terminal_id, sequence, type, request, status, reply_type,
        reply_timestamp, reply, ord)
      on r.ord = ${source}.ord`;
}

/** The shower a terminal's ShowerStart of `startSequence` began, or null. */
export async function findShowerStartedBy(db: Db, terminalId: number, startSequence: number) {
  return (await db.selectFrom("terminal_showers").select(["hold_id", "card_account_id"])
    .where("terminal_id", "=", terminalId).where("start_sequence", "=", startSequence)
    .executeTakeFirst()) ?? null;
}

/**
 * Started showers' rows (`saveShower`) as an `insert … select` from the wallet's new holds `held`
 * (`ord`, `id`, `card_account_id`): `rows[i]` is recorded when `held` has a row with
 * `ord = i + 1`, with the tariff it started under (`id`, `fen_per_unit`).
 */
export function recordShowersSql(
  rows: Array<{ terminalId: number; sequence: number }>,
  held: RawBuilder<unknown>,
  tariff: RawBuilder<unknown>,
): RawBuilder<unknown> {
  return sql`insert into terminal_showers (hold_id, terminal_id, start_sequence, card_account_id,
      tariff_id, fen_per_unit)
    select ${held}.id, r.terminal_id, r.sequence, ${held}.card_account_id, tf.id, tf.fen_per_unit
    from ${held} join unnest(${rows.map((r) => r.terminalId)}::bigint[],
      ${rows.map((r) => r.sequence)}::bigint[]) with ordinality as r(terminal_id, sequence, ord)
      on r.ord = ${held}.ord
    cross join ${tariff} tf`;
}

/**
 * Shower controllers' usage at the tariff each shower started under, as SQL over the columns of
 * an end (hold, terminal, units): NULL when the hold is not a shower this terminal started.
 */
export function showerUsageOfSql(
  end: { holdId: RawBuilder<number>; terminalId: RawBuilder<number>; units: RawBuilder<number> },
): RawBuilder<number | null> {
  return sql<number | null>`(select (${end.units})::bigint * s.fen_per_unit
    from terminal_showers s
    where s.hold_id = ${end.holdId} and s.terminal_id = ${end.terminalId})`;
}

/** The highest sequence number recorded for a terminal (0 before any). */
export async function highestRecordedSequence(db: Db, terminalId: number): Promise<number> {
  const row = await db.selectFrom("terminal_requests").select("sequence")
    .where("terminal_id", "=", terminalId).orderBy("sequence", "desc").limit(1)
    .executeTakeFirst();
  return row ? Number(row.sequence) : 0;
}

/** The message code recorded under (terminal, sequence), or null. */
export async function recordedType(
  db: Db,
  terminalId: number,
  sequence: number,
): Promise<number | null> {
  const row = await db.selectFrom("terminal_requests").select("type")
    .where("terminal_id", "=", terminalId).where("sequence", "=", sequence).executeTakeFirst();
  return row ? row.type : null;
}

/** Whether the terminal recorded a request of `type` with exactly this body (any sequence). */
export async function recordedWithBody(
  db: Db,
  terminalId: number,
  type: number,
  body: Uint8Array,
): Promise<boolean> {
  const row = await db.selectFrom("terminal_requests").select("sequence")
    .where("terminal_id", "=", terminalId).where("type", "=", type).where("request", "=", body)
    .limit(1).executeTakeFirst();
  return row !== undefined;
}

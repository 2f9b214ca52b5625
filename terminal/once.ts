/**
 * Record-once (PROTOCOL.md §3): a money-moving request runs once per (terminal, sequence). Its
 * money and its record, the reply included, commit together; a retry, on any instance, after any
 * restart, is answered with the recorded reply, byte for byte, and moves nothing.
 *
 * Each kind of money-moving request is written once, as a `MoneyRequest`: the checks that need no
 * database, the common case in one statement (optional), and every case. Both ways build their
 * replies with the same functions, and the checks run once, before either.
 */
import type { Db } from "../modules/platform/database.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import {
  type Reply,
  replyOf,
  requestReference,
  serverTime,
  type ServiceContext,
} from "./context.ts";
import { isDatabaseError } from "./refusals.ts";
import { findRequest, saveRequest, type StoredRequest } from "./repository.ts";

/** What a money-moving request did: its reply, and for the staff pages its amount and card. */
export interface Outcome {
  message: Message;
  /** Fen moved (charged, held, given back). */
  amount: number;
  cardAccountId: number | null;
}

/** An outcome that moved nothing. */
export function refused(message: Message): Outcome {
  return { message, amount: 0, cardAccountId: null };
}

/** How one kind of money-moving request is handled. */
export interface MoneyRequest<M extends Message> {
  /** The refusal of the checks that need no database (amount, password, allowance), or null. */
  refuseEarly?(ctx: ServiceContext, terminal: Terminal, request: M): Message | null;
  /**
   * The common case in one statement, money and record together: its reply, or null when it is
   * not the common case (nothing written; `handle` answers it).
   */
  inOneStatement?(
    ctx: ServiceContext,
    terminal: Terminal,
    frame: RawFrame,
    request: M,
  ): Promise<Message | null>;
  /** Every case. Runs inside the record's transaction, or on its own when that failed. */
  handle(ctx: ServiceContext, terminal: Terminal, frame: RawFrame, request: M): Promise<Outcome>;
}

/** Answers a money-moving request once per (terminal, sequence), as `kind` says. */
export async function handleMoneyRequest<M extends Message>(
  kind: MoneyRequest<M>,
  ctx: ServiceContext,
  terminal: Terminal,
  frame: RawFrame,
  request: M,
): Promise<Reply> {
  const early = kind.refuseEarly?.(ctx, terminal, request) ?? null;
  if (early === null && kind.inOneStatement) {
    const done = await kind.inOneStatement(ctx, terminal, frame, request);
    if (done) return replyOf(done);
  }
  return await once(
    ctx,
    terminal,
    frame,
    (ctx) =>
      early === null ? kind.handle(ctx, terminal, frame, request) : Promise.resolve(refused(early)),
  );
}

/** (terminal, sequence) was recorded by someone else while this request ran. */
class AlreadyRecorded extends Error {}

/**
 * Runs a money-moving request once per (terminal, sequence): a recorded one answers from the
 * record; a new one runs, is recorded, and answers. If another instance recorded it first, its
 * record wins (the wallet's reference made sure money moved at most once).
 */
async function once(
  ctx: ServiceContext,
  terminal: Terminal,
  frame: RawFrame,
  run: (ctx: ServiceContext) => Promise<Outcome>,
): Promise<Reply> {
  // No lookup first: the record is inserted in the same transaction as the money, so a retry's
  // insert conflicts, its transaction (and any money it moved) rolls back, and the stored reply
  // answers it. The common case, a new request, costs no extra round trip.
  let reply: Reply | null;
  try {
    // The money and its record commit together: one commit (one WAL flush) per request.
    reply = await ctx.db.transaction().execute(async (trx) => {
      const recorded = await record(trx, terminal, frame, await run({ ...ctx, db: trx }));
      if (!recorded) throw new AlreadyRecorded();
      return recorded;
    });
  } catch (err) {
    if (!(err instanceof AlreadyRecorded) && !isDatabaseError(err)) throw err;
    // Another instance recorded it first, or a first-use case the wallet resolves only outside a
    // transaction (its counter account missing, a concurrent duplicate reference): run it plainly;
    // the wallet's reference keeps the money moving at most once.
    const first = await findRequest(ctx.db, terminal.id, frame.sequence);
    if (first) return replayed(ctx, first, frame);
    reply = await record(ctx.db, terminal, frame, await run(ctx));
  }
  if (reply) return reply;
  const first = await findRequest(ctx.db, terminal.id, frame.sequence);
  if (!first) {
    throw new Error(
      `Cannot find the record of request ${requestReference(terminal.id, frame.sequence)}`,
    );
  }
  return replayed(ctx, first, frame);
}

/** Records `outcome` under the request; null when (terminal, sequence) was recorded already. */
async function record(
  db: Db,
  terminal: Terminal,
  frame: RawFrame,
  outcome: Outcome,
): Promise<Reply | null> {
  const reply = replyOf(outcome.message);
  const saved = await saveRequest(db, {
    ...requestRecord(terminal, frame, reply),
    amount: outcome.amount,
    cardAccountId: outcome.cardAccountId,
  });
  return saved ? reply : null;
}

/** A request's record as stored: the request as received, and its reply (as a template, for SQL). */
export function requestRecord(terminal: Terminal, frame: RawFrame, reply: Reply) {
  return {
    terminalId: terminal.id,
    sequence: frame.sequence,
    type: frame.type,
    request: frame.body,
    status: reply.status ?? 0,
    replyType: reply.code,
    replyTimestamp: frame.timestamp,
    reply: reply.body,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The recorded reply, for a retry of the recorded request (the same type and body); anything else
 * under its number is SequenceReused.
 */
function replayed(ctx: ServiceContext, stored: StoredRequest, frame: RawFrame): Reply {
  if (stored.type !== frame.type || !sameBytes(new Uint8Array(stored.request), frame.body)) {
    // An Error's header echoes the request's timestamp like every reply (PROTOCOL.md §2).
    return replyOf({
      code: MessageCode.Error,
      status: Status.SequenceReused,
      serverTime: serverTime(ctx),
    });
  }
  return {
    code: stored.reply_type,
    body: new Uint8Array(stored.reply),
    status: stored.status,
    timestamp: stored.reply_timestamp,
  };
}

/**
 * The terminal registry: readers belong to a merchant, have a kind, a status and a key version.
 * Keys are never stored: key = HMAC-SHA256(APP_SECRET, "terminal-key\n<id>\n<version>").
 */
import { createHmac } from "node:crypto";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { toHex } from "../platform/crypto.ts";
import type { ReaderKey } from "../platform/operator.ts";
import { writeAudit } from "../staff/mod.ts";
import type { TerminalKind, TerminalStatus } from "./tables.ts";
import "./tables.ts";

export const TERMINAL_KIND_LABELS: Record<TerminalKind, string> = {
  canteen_pos: "食堂POS机",
  supermarket_pos: "超市POS机",
  qr_scanner: "扫码器",
  shower: "淋浴水控",
};

/** A registered reader as the protocol server and the staff pages see it. */
export interface Terminal {
  id: number;
  merchantId: number;
  merchantName: string;
  kind: TerminalKind;
  name: string;
  status: TerminalStatus;
  keyVersion: number;
  lastSeenAt: Date | null;
  lastAddress: string | null;
  errorCount: number;
  createdAt: Date;
}

/** Who changed something, for the audit log. */
export interface Actor {
  staffId: number | null;
  ip?: string | null;
}

/** The 32-byte key of a terminal at a key version. */
export function deriveTerminalKey(
  appSecret: string,
  terminalId: number,
  keyVersion: number,
): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", appSecret).update(`terminal-key\n${terminalId}\n${keyVersion}`).digest(),
  );
}

/** The key as the staff page shows it and the simulator takes it: 64 hex digits. */
export function terminalKeyHex(appSecret: string, terminalId: number, keyVersion: number): string {
  return toHex(deriveTerminalKey(appSecret, terminalId, keyVersion));
}

function baseQuery(db: Db) {
  return db.selectFrom("terminals").innerJoin("merchants", "merchants.id", "terminals.merchant_id")
    .select([
      "terminals.id",
      "terminals.merchant_id as merchantId",
      "merchants.name as merchantName",
      "terminals.kind",
      "terminals.name",
      "terminals.status",
      "terminals.key_version as keyVersion",
      "terminals.last_seen_at as lastSeenAt",
      "terminals.last_address as lastAddress",
      "terminals.error_count as errorCount",
      "terminals.created_at as createdAt",
    ]);
}

/** One terminal with its merchant's name, or null. */
export async function findTerminal(db: Db, id: number): Promise<Terminal | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await baseQuery(db).where("terminals.id", "=", id).executeTakeFirst()) ?? null;
}

/** The terminals of `ids` that exist, with their merchants' names (the reader registry's refresh). */
export async function findTerminals(db: Db, ids: number[]): Promise<Terminal[]> {
  const wanted = ids.filter((id) => Number.isSafeInteger(id) && id > 0);
  if (!wanted.length) return [];
  return await baseQuery(db).where("terminals.id", "in", wanted).execute();
}

/** Terminals, newest first, optionally of one merchant. */
export async function listTerminals(
  db: Db,
  filter: { merchantId?: number } = {},
): Promise<Terminal[]> {
  let q = baseQuery(db);
  if (filter.merchantId) q = q.where("terminals.merchant_id", "=", filter.merchantId);
  return await q.orderBy("terminals.id").execute();
}

/** Every registered reader with its current key, for `deno task sim keys` (an operator's tool). */
export async function listReaderKeys(db: Db, appSecret: string): Promise<ReaderKey[]> {
  return (await listTerminals(db)).map((t) => ({
    id: t.id,
    kind: t.kind,
    status: t.status,
    merchantName: t.merchantName,
    name: t.name,
    key: terminalKeyHex(appSecret, t.id, t.keyVersion),
  }));
}

/** Registers a reader; returns it with its key, which is shown once and never stored. */
export async function registerTerminal(
  db: Db,
  appSecret: string,
  input: { merchantId: number; kind: TerminalKind; name: string; actor?: Actor },
): Promise<{ terminal: Terminal; keyHex: string }> {
  if (!(input.kind in TERMINAL_KIND_LABELS)) {
    throw new DomainError("Bad terminal kind", "请选择终端类型", "kind");
  }
  const name = input.name.trim();
  if (!name || name.length > 40) {
    throw new DomainError("Bad terminal name", "请输入40字以内的终端名称", "name");
  }
  const id = await db.transaction().execute(async (trx) => {
    const merchant = await trx.selectFrom("merchants").select(["id", "active"]).where(
      "id",
      "=",
      input.merchantId,
    )
      .executeTakeFirst();
    if (!merchant) throw new DomainError("No such merchant", "请选择商户", "merchant_id");
    const row = await trx.insertInto("terminals").values({
      merchant_id: input.merchantId,
      kind: input.kind,
      name,
    })
      .returning("id").executeTakeFirstOrThrow();
    await writeAudit(trx, {
      staffId: input.actor?.staffId ?? null,
      action: "terminal.registered",
      targetType: "terminal",
      targetId: row.id,
      after: { merchantId: input.merchantId, kind: input.kind, name },
      ip: input.actor?.ip,
    });
    return row.id;
  });
  const terminal = (await findTerminal(db, id))!;
  return { terminal, keyHex: terminalKeyHex(appSecret, id, terminal.keyVersion) };
}

/** Issues a new key (the old one stops working at once); returns it, shown once. */
export async function rotateTerminalKey(
  db: Db,
  appSecret: string,
  id: number,
  actor?: Actor,
): Promise<string> {
  const version = await db.transaction().execute(async (trx) => {
    const row = await trx.updateTable("terminals").set({ key_version: sql`key_version + 1` }).where(
      "id",
      "=",
      id,
    )
      .returning("key_version").executeTakeFirst();
    if (!row) throw new NotFoundError(`terminal ${id}`);
    await writeAudit(trx, {
      staffId: actor?.staffId ?? null,
      action: "terminal.key_rotated",
      targetType: "terminal",
      targetId: id,
      before: { keyVersion: row.key_version - 1 },
      after: { keyVersion: row.key_version },
      ip: actor?.ip,
    });
    return row.key_version;
  });
  return terminalKeyHex(appSecret, id, version);
}

/** Disables or re-enables a reader; a disabled reader's frames are refused. */
export async function setTerminalStatus(
  db: Db,
  id: number,
  status: TerminalStatus,
  actor?: Actor,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom("terminals").select("status").where("id", "=", id)
      .forUpdate()
      .executeTakeFirst();
    if (!before) throw new NotFoundError(`terminal ${id}`);
    await trx.updateTable("terminals").set({ status }).where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: actor?.staffId ?? null,
      action: status === "disabled" ? "terminal.disabled" : "terminal.enabled",
      targetType: "terminal",
      targetId: id,
      before,
      after: { status },
      ip: actor?.ip,
    });
  });
}

/** Notes that a reader was heard from (called by the protocol server, not on every frame). */
export async function recordTerminalSeen(db: Db, id: number, address: string): Promise<void> {
  await db.updateTable("terminals").set({ last_seen_at: sql`now()`, last_address: address }).where(
    "id",
    "=",
    id,
  )
    .execute();
}

/** Logs a refused frame of a known reader, for the live view. */
export async function recordTerminalError(
  db: Db,
  id: number,
  error: { code: string; detail: string; address: string | null },
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto("terminal_errors").values({
      terminal_id: id,
      code: error.code,
      detail: error.detail.slice(0, 200),
      address: error.address,
    }).execute();
    await trx.updateTable("terminals").set({ error_count: sql`error_count + 1` }).where(
      "id",
      "=",
      id,
    ).execute();
  });
}

/** The latest refused frames of a reader. */
export async function listTerminalErrors(db: Db, id: number, limit = 10) {
  return await db.selectFrom("terminal_errors").select(["id", "at", "code", "detail", "address"])
    .where("terminal_id", "=", id).orderBy("id", "desc").limit(limit).execute();
}

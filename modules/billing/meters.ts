import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { toHex } from "../platform/crypto.ts";
import { MeterError } from "./errors.ts";
import type { Utility } from "./tables.ts";
import "./tables.ts";

/** What is sent to the meter system for one purchase. */
export interface MeterOrder {
  /** Our order number: the meter system's idempotency key. */
  orderNo: string;
  roomId: number;
  buildingCode: string;
  roomNumber: string;
  utility: Utility;
  /** Credit to add, in fen. */
  amount: number;
  /** The same credit in thousandths of the tariff's unit (kWh or ton). */
  milliUnits: number;
}

/** The meter system's answer to a delivered order: the room account's remaining credit. */
export interface MeterReceipt {
  orderNo: string;
  /** Remaining credit of the room account after the order, in fen. */
  balance: number;
  reportedAt: Date;
}

/** A room account whose credit is read. */
export interface MeterRoom {
  roomId: number;
  buildingCode: string;
  roomNumber: string;
  utility: Utility;
}

/** A room account's remaining credit as the meter system reports it (it falls as power is used). */
export interface MeterReading {
  roomId: number;
  utility: Utility;
  /** Remaining credit, fen. */
  balance: number;
  reportedAt: Date;
}

/**
 * A meter system. `deliver` is idempotent on `orderNo` (a repeat returns the first receipt);
 * `lookup` tells whether an order was applied; `readBalances` reports room accounts' remaining
 * credit (rooms it knows nothing of are left out). All throw MeterError when the system cannot be
 * reached or refuses (`retryable` says whether trying again may help).
 */
export interface MeterAdapter {
  readonly name: string;
  deliver(order: MeterOrder): Promise<MeterReceipt>;
  lookup(orderNo: string): Promise<MeterReceipt | null>;
  /** Absent when the system cannot tell (then only delivery receipts report credit). */
  readBalances?(rooms: MeterRoom[]): Promise<MeterReading[]>;
}

/**
 * The simulated meter system for the embedded setup: keeps room balances in its own tables,
 * answers after `delayMs`, and fails while staff have switched on a fault for the room or for
 * every room (`setSimulatedFault`).
 */
export class SimulatedMeter implements MeterAdapter {
  readonly name = "simulated";
  constructor(readonly db: Db, readonly options: { delayMs?: number } = {}) {}

  async deliver(order: MeterOrder): Promise<MeterReceipt> {
    const delay = this.options.delayMs ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const fault = await this.db.selectFrom("billing_sim_faults").select("scope")
      .where("scope", "in", ["all", `room:${order.roomId}`]).executeTakeFirst();
    if (fault) throw new MeterError(`Simulated meter fault (${fault.scope})`, true);
    return await this.db.transaction().execute(async (trx) => {
      const fresh = await trx.insertInto("billing_sim_orders").values({
        order_no: order.orderNo,
        room_id: order.roomId,
        utility: order.utility,
        amount: order.amount,
        balance_after: 0,
      }).onConflict((oc) => oc.column("order_no").doNothing()).returning("order_no")
        .executeTakeFirst();
      if (!fresh) {
        const seen = await trx.selectFrom("billing_sim_orders").select([
          "balance_after",
          "applied_at",
        ])
          .where("order_no", "=", order.orderNo).executeTakeFirstOrThrow();
        return { orderNo: order.orderNo, balance: seen.balance_after, reportedAt: seen.applied_at };
      }
      const meter = await trx.insertInto("billing_sim_meters").values({
        room_id: order.roomId,
        utility: order.utility,
        balance: order.amount,
      }).onConflict((oc) =>
        oc.columns(["room_id", "utility"]).doUpdateSet((eb) => ({
          balance: eb("billing_sim_meters.balance", "+", order.amount),
          updated_at: new Date(),
        }))
      ).returning(["balance", "updated_at"]).executeTakeFirstOrThrow();
      await trx.updateTable("billing_sim_orders").set({ balance_after: meter.balance })
        .where("order_no", "=", order.orderNo).execute();
      return { orderNo: order.orderNo, balance: meter.balance, reportedAt: meter.updated_at };
    });
  }

  async lookup(orderNo: string): Promise<MeterReceipt | null> {
    const row = await this.db.selectFrom("billing_sim_orders").select([
      "balance_after",
      "applied_at",
    ])
      .where("order_no", "=", orderNo).executeTakeFirst();
    return row ? { orderNo, balance: row.balance_after, reportedAt: row.applied_at } : null;
  }

  async readBalances(rooms: MeterRoom[]): Promise<MeterReading[]> {
    if (rooms.length === 0) return [];
    const rows = await this.db.selectFrom("billing_sim_meters")
      .select(["room_id", "utility", "balance", "updated_at"])
      .where("room_id", "in", [...new Set(rooms.map((r) => r.roomId))]).execute();
    const wanted = new Set(rooms.map((r) => `${r.roomId}:${r.utility}`));
    return rows.filter((r) => wanted.has(`${r.room_id}:${r.utility}`)).map((r) => ({
      roomId: r.room_id,
      utility: r.utility as Utility,
      balance: r.balance,
      reportedAt: r.updated_at,
    }));
  }
}

/** The simulated meter system: a room uses `fen` worth of its credit (never below zero). */
export async function useSimulatedCredit(
  db: Db,
  roomId: number,
  utility: Utility,
  fen: number,
): Promise<number> {
  const row = await db.insertInto("billing_sim_meters").values({ room_id: roomId, utility })
    .onConflict((oc) => oc.columns(["room_id", "utility"]).doNothing()).execute()
    .then(() =>
      db.updateTable("billing_sim_meters")
        .set((eb) => ({
          balance: sql<number>`greatest(0, ${eb.ref("balance")} - ${fen})`,
          updated_at: new Date(),
        }))
        .where("room_id", "=", roomId).where("utility", "=", utility)
        .returning("balance").executeTakeFirstOrThrow()
    );
  return row.balance;
}

/** Switches a simulated meter fault on or off: `roomId` null means every room. */
export async function setSimulatedFault(db: Db, roomId: number | null, on: boolean): Promise<void> {
  const scope = roomId === null ? "all" : `room:${roomId}`;
  if (on) {
    await db.insertInto("billing_sim_faults").values({ scope })
      .onConflict((oc) => oc.column("scope").doNothing()).execute();
  } else {
    await db.deleteFrom("billing_sim_faults").where("scope", "=", scope).execute();
  }
}

/** The simulated meter's fault switches that are on: "all" and/or room ids. */
export async function listSimulatedFaults(db: Db): Promise<{ all: boolean; roomIds: number[] }> {
  const rows = await db.selectFrom("billing_sim_faults").select("scope").execute();
  return {
    all: rows.some((r) => r.scope === "all"),
    roomIds: rows.filter((r) => r.scope.startsWith("room:")).map((r) => Number(r.scope.slice(5))),
  };
}

const enc = new TextEncoder();

/**
 * Signature of a meter API request: lower-case hex HMAC-SHA256 under the API key of the
 * decimal Unix timestamp (seconds), a newline, and the exact request body.
 */
export async function signMeterRequest(
  key: string,
  timestamp: string,
  body: string,
): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    enc.encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [
      "sign",
    ],
  );
  const sig = await crypto.subtle.sign("HMAC", k, enc.encode(`${timestamp}\n${body}`));
  return toHex(new Uint8Array(sig));
}

/** Options of the HTTP meter adapter. */
export interface HttpMeterOptions {
  /** Base URL of the vendor's API, e.g. https://meter.example.edu.cn/api (METER_API_URL). */
  url: string;
  /** Shared signing key (METER_API_KEY). */
  key: string;
  /** Per-request deadline; keep it well below the worker's lease. */
  timeoutMs?: number;
  fetch?: typeof fetch;
  now?: () => Date;
}

interface VendorBalances {
  balances?: Array<{
    building?: unknown;
    room?: unknown;
    utility?: unknown;
    balanceFen?: unknown;
    reportedAt?: unknown;
  }>;
}

interface VendorReceipt {
  orderNo?: unknown;
  status?: unknown;
  balanceFen?: unknown;
  reportedAt?: unknown;
}

/**
 * A meter vendor's JSON API. Every request is a POST with a JSON body and the headers
 * `X-Meter-Timestamp` (Unix seconds) and `X-Meter-Signature` (see `signMeterRequest`).
 * - `POST {url}/orders` `{orderNo, building, room, utility, amountFen, milliUnits}` credits a room
 *   account once per orderNo; 200 `{orderNo, status: "delivered", balanceFen, reportedAt}`, also for
 *   a repeat of an applied order.
 * - `POST {url}/orders/query` `{orderNo}`: 200 with the same receipt, or 404 when never applied.
 * - `POST {url}/balances` `{rooms: [{building, room, utility}]}` (at most 200): 200 `{balances:
 *   [{building, room, utility, balanceFen, reportedAt}]}`, rooms it does not know left out.
 * 5xx, 408, 429, timeouts and network errors are retried; other 4xx refuse the order for good.
 */
export class HttpMeter implements MeterAdapter {
  readonly name = "http";
  constructor(readonly options: HttpMeterOptions) {
    if (!/^https?:\/\//.test(options.url)) {
      throw new Error("Cannot use the meter API: METER_API_URL must be http(s)");
    }
    if (!options.key) throw new Error("Cannot use the meter API: METER_API_KEY is empty");
  }

  async #post(
    path: string,
    payload: Record<string, unknown>,
  ): Promise<{ status: number; body: VendorReceipt & VendorBalances }> {
    const body = JSON.stringify(payload);
    const now = this.options.now?.() ?? new Date();
    const timestamp = String(Math.floor(now.getTime() / 1000));
    const signature = await signMeterRequest(this.options.key, timestamp, body);
    let res: Response;
    try {
      res = await (this.options.fetch ?? fetch)(`${this.options.url.replace(/\/+$/, "")}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-meter-timestamp": timestamp,
          "x-meter-signature": signature,
        },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new MeterError(
        `Meter API unreachable: ${(err as Error).name}: ${(err as Error).message}`,
        true,
      );
    }
    const text = (await res.text().catch(() => "")).slice(0, 10_000);
    let parsed: VendorReceipt & VendorBalances = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      if (res.ok) {
        throw new MeterError(`Meter API answered ${res.status} with a body that is not JSON`, true);
      }
    }
    return { status: res.status, body: parsed && typeof parsed === "object" ? parsed : {} };
  }

  #receipt(orderNo: string, body: VendorReceipt): MeterReceipt {
    const balance = body.balanceFen;
    const at = typeof body.reportedAt === "string" ? new Date(body.reportedAt) : null;
    if (
      body.orderNo !== orderNo || body.status !== "delivered" || !Number.isSafeInteger(balance) ||
      !at || isNaN(at.getTime())
    ) {
      throw new MeterError(`Meter API receipt for ${orderNo} is malformed`, true);
    }
    return { orderNo, balance: balance as number, reportedAt: at };
  }

  async deliver(order: MeterOrder): Promise<MeterReceipt> {
    const { status, body } = await this.#post("/orders", {
      orderNo: order.orderNo,
      building: order.buildingCode,
      room: order.roomNumber,
      utility: order.utility,
      amountFen: order.amount,
      milliUnits: order.milliUnits,
    });
    if (status === 200) return this.#receipt(order.orderNo, body);
    const retryable = status >= 500 || status === 408 || status === 429;
    throw new MeterError(`Meter API refused order ${order.orderNo} with ${status}`, retryable);
  }

  async lookup(orderNo: string): Promise<MeterReceipt | null> {
    const { status, body } = await this.#post("/orders/query", { orderNo });
    if (status === 200) return this.#receipt(orderNo, body);
    if (status === 404) return null;
    throw new MeterError(`Meter API query for ${orderNo} answered ${status}`, true);
  }

  async readBalances(rooms: MeterRoom[]): Promise<MeterReading[]> {
    if (rooms.length === 0) return [];
    const { status, body } = await this.#post("/balances", {
      rooms: rooms.map((r) => ({
        building: r.buildingCode,
        room: r.roomNumber,
        utility: r.utility,
      })),
    });
    if (status !== 200 || !Array.isArray(body.balances)) {
      throw new MeterError(`Meter API balances answered ${status}`, true);
    }
    const byKey = new Map(rooms.map((r) => [`${r.buildingCode}/${r.roomNumber}/${r.utility}`, r]));
    const out: MeterReading[] = [];
    for (const b of body.balances) {
      const room = byKey.get(`${b.building}/${b.room}/${b.utility}`);
      const at = typeof b.reportedAt === "string" ? new Date(b.reportedAt) : null;
      // A reading we cannot place or read is left out, not guessed.
      if (!room || !Number.isSafeInteger(b.balanceFen) || !at || isNaN(at.getTime())) continue;
      out.push({
        roomId: room.roomId,
        utility: room.utility,
        balance: b.balanceFen as number,
        reportedAt: at,
      });
    }
    return out;
  }
}

/** The meter adapter of the configuration: METER_ADAPTER "simulated" (default) or "http". */
export function meterAdapterFor(deps: { db: Db; config: Config }): MeterAdapter {
  const env = deps.config.env;
  if (deps.config.meterAdapter === "http") {
    return new HttpMeter({
      url: env.METER_API_URL ?? "",
      key: env.METER_API_KEY ?? "",
      timeoutMs: Number(env.METER_TIMEOUT_MS) > 0 ? Number(env.METER_TIMEOUT_MS) : 10_000,
    });
  }
  if (deps.config.meterAdapter !== "simulated") {
    throw new Error(
      `Cannot start: METER_ADAPTER must be "simulated" or "http", got "${deps.config.meterAdapter}"`,
    );
  }
  const delay = Number(env.METER_SIM_DELAY_MS ?? "1500");
  return new SimulatedMeter(deps.db, {
    delayMs: Number.isFinite(delay) && delay >= 0 ? delay : 1500,
  });
}

/**
 * Builders for billing's tests beside testkit's world and students: rooms, a counting wallet, the
 * ledger check.
 */
import type { Db } from "../platform/database.ts";
import { verifyLedger } from "../wallet/mod.ts";
import { createBuilding, createRoom, type Room } from "./rooms.ts";
import type { UtilityMoney } from "./delivery.ts";
import { walletMoney } from "./wallet_link.ts";

/** A building "B01 1号楼" with rooms 101 and 102 (capacity 4). */
export async function makeRooms(db: Db): Promise<{ r101: Room; r102: Room }> {
  const b = await createBuilding(db, { code: "B01", name: "1号楼" });
  return {
    r101: await createRoom(db, { buildingId: b.id, number: "101", capacity: 4 }),
    r102: await createRoom(db, { buildingId: b.id, number: "102", capacity: 4 }),
  };
}

/** The real wallet, counting calls (to show that retries do not move money twice). */
export function countingMoney(): UtilityMoney & { pays: number; refunds: number } {
  const m = {
    pays: 0,
    refunds: 0,
    pay: (db: Db, input: Parameters<UtilityMoney["pay"]>[1]) => {
      m.pays++;
      return walletMoney.pay(db, input);
    },
    refund: (db: Db, input: Parameters<UtilityMoney["refund"]>[1]) => {
      m.refunds++;
      return walletMoney.refund(db, input);
    },
    isInsufficientFunds: walletMoney.isInsufficientFunds,
  };
  return m;
}

/** Throws unless the wallet's ledger verifier is happy. */
export async function assertLedgerBalanced(db: Db): Promise<void> {
  const report = await verifyLedger(db);
  if (!report.ok) throw new Error(`Ledger does not balance: ${report.problems.join("; ")}`);
}

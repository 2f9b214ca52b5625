/**
 * The changes staff make on the billing pages. Each runs in one transaction with its audit record
 * (staff/audit.ts), so the change and the record commit together or not at all; a rule not met
 * is a `DomainError` naming its form field.
 */
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { type AuditEntry, writeAudit } from "../staff/mod.ts";
import { accountByPhone } from "./admin_reads.ts";
import { requestRefund, retryJob, wakeDeliveryWorkers } from "./delivery.ts";
import { setSimulatedFault, useSimulatedCredit } from "./meters.ts";
import { setThreshold } from "./readings.ts";
import {
  type Building,
  createBuilding,
  createRoom,
  findBuilding,
  findRoomByCode,
  type ImportResult,
  importRoomsCsv,
  moveResident,
  removeResident,
  renameBuilding,
  type Room,
  roomLabel,
  updateRoom,
} from "./rooms.ts";
import { currentTariff, KIND_LABELS, setTariff } from "./tariffs.ts";
import type { TariffKind, TariffUnit, Utility } from "./tables.ts";

/** The staff member making a change, and from where, for the audit record. */
export interface StaffActor {
  staffId: number;
  ip: string | null;
}

type Audit = Omit<AuditEntry, "staffId" | "ip">;

async function audited<T>(
  db: Db,
  actor: StaffActor,
  work: (trx: Db) => Promise<{ result: T; audit: Audit }>,
): Promise<T> {
  return await db.transaction().execute(async (trx) => {
    const { result, audit } = await work(trx);
    await writeAudit(trx, { ...audit, staffId: actor.staffId, ip: actor.ip });
    return result;
  });
}

/** 新增楼栋. */
export function addBuilding(
  db: Db,
  actor: StaffActor,
  input: { code: string; name: string },
): Promise<Building> {
  return audited(db, actor, async (trx) => {
    const b = await createBuilding(trx, input);
    const audit = { action: "billing.building_created", targetType: "billing_building" };
    return { result: b, audit: { ...audit, targetId: b.id, after: b } };
  });
}

/** Renames a building. */
export function editBuilding(db: Db, actor: StaffActor, id: number, name: string): Promise<void> {
  return audited(db, actor, async (trx) => {
    const before = await findBuilding(trx, id);
    if (!before) throw new NotFoundError(`building ${id}`);
    const after = await renameBuilding(trx, id, name);
    const audit = { action: "billing.building_renamed", targetType: "billing_building" };
    return { result: undefined, audit: { ...audit, targetId: id, before, after } };
  });
}

/** Adds a room to a building. */
export function addRoom(
  db: Db,
  actor: StaffActor,
  buildingId: number,
  input: { number: string; beds: number },
): Promise<Room> {
  return audited(db, actor, async (trx) => {
    const room = await createRoom(trx, { buildingId, number: input.number, capacity: input.beds });
    const audit = { action: "billing.room_created", targetType: "billing_room" };
    return { result: room, audit: { ...audit, targetId: room.id, after: room } };
  });
}

/** Changes a room's 床位数 or takes it out of use. */
export function editRoom(
  db: Db,
  actor: StaffActor,
  room: Room,
  input: { beds: number; active: boolean },
): Promise<void> {
  return audited(db, actor, async (trx) => {
    const after = await updateRoom(trx, room.id, { capacity: input.beds, active: input.active });
    const audit = { action: "billing.room_updated", targetType: "billing_room" };
    return { result: undefined, audit: { ...audit, targetId: room.id, before: room, after } };
  });
}

/** Imports buildings and rooms from CSV (rooms.ts: importRoomsCsv); the record keeps 50 errors. */
export function importRooms(db: Db, actor: StaffActor, csv: string): Promise<ImportResult> {
  return audited(db, actor, async (trx) => {
    const result = await importRoomsCsv(trx, csv);
    const audit = { action: "billing.rooms_imported", targetType: "billing_room", targetId: "csv" };
    return {
      result,
      audit: { ...audit, after: { ...result, errors: result.errors.slice(0, 50) } },
    };
  });
}

const NO_ACCOUNT = "没有这个手机号的一信通账号";

/** 登记/调整住户: the account with that 手机号 moves into the active room named by code. */
export async function placeResident(
  db: Db,
  actor: StaffActor,
  input: { phone: string; building: string; room: string },
): Promise<void> {
  const account = await accountByPhone(db, input.phone);
  if (!account) throw new DomainError("No account with that phone", NO_ACCOUNT, "phone");
  const room = await findRoomByCode(db, input.building, input.room);
  if (!room) {
    throw new DomainError("No such active room", "找不到该楼栋编码和房间号的有效房间", "room");
  }
  await audited(db, actor, async (trx) => {
    const r = await moveResident(trx, {
      accountId: account.id,
      roomId: room.id,
      staffId: actor.staffId,
    });
    const audit = { action: "billing.resident_moved", targetType: "account", targetId: account.id };
    const before = r.before ? { roomId: r.before.id, room: roomLabel(r.before) } : null;
    const after = { roomId: r.after.id, room: roomLabel(r.after) };
    return { result: undefined, audit: { ...audit, before, after } };
  });
}

/** 迁出住户: the account with that 手机号 leaves its room. */
export async function unplaceResident(db: Db, actor: StaffActor, phone: string): Promise<void> {
  const account = await accountByPhone(db, phone);
  if (!account) throw new DomainError("No account with that phone", NO_ACCOUNT, "phone");
  await audited(db, actor, async (trx) => {
    const room = await removeResident(trx, account.id);
    const audit = { action: "billing.resident_removed", targetType: "account" };
    const before = { roomId: room.id, room: roomLabel(room) };
    return { result: undefined, audit: { ...audit, targetId: account.id, before } };
  });
}

/** Puts a new tariff version in force (tariffs.ts: setTariff checks it). */
export function changeTariff(
  db: Db,
  actor: StaffActor,
  input: { kind: string; unit: string; fenPerUnit: number; preauthFen: number | null },
): Promise<void> {
  return audited(db, actor, async (trx) => {
    const kind = input.kind as TariffKind;
    const before = kind in KIND_LABELS ? await currentTariff(trx, kind) : null;
    const after = await setTariff(trx, {
      kind,
      unit: input.unit as TariffUnit,
      fenPerUnit: input.fenPerUnit,
      preauthAmount: input.preauthFen,
      staffId: actor.staffId,
    });
    const audit = { action: "billing.tariff_set", targetType: "billing_tariff" };
    return { result: undefined, audit: { ...audit, targetId: after.id, before, after } };
  });
}

/**
 * A delivery job staff act on (retry now, or stop and refund): false, recording nothing, when the
 * job is past that point; else the workers are woken to do it.
 */
async function actOnDelivery(
  db: Db,
  actor: StaffActor,
  purchaseId: number,
  act: { change: typeof retryJob; action: string },
): Promise<boolean> {
  const ok = await db.transaction().execute(async (trx) => {
    if (!await act.change(trx, purchaseId)) return false;
    await writeAudit(trx, {
      staffId: actor.staffId,
      ip: actor.ip,
      action: act.action,
      targetType: "billing_purchase",
      targetId: purchaseId,
    });
    return true;
  });
  if (ok) wakeDeliveryWorkers();
  return ok;
}

/** Tries a failed or stuck delivery again now; false once it is finished. */
export function retryDelivery(db: Db, actor: StaffActor, purchaseId: number): Promise<boolean> {
  return actOnDelivery(db, actor, purchaseId, {
    change: retryJob,
    action: "billing.delivery_retried",
  });
}

/** Stops a pending delivery and refunds it; false unless it is still pending. */
export function refundDelivery(db: Db, actor: StaffActor, purchaseId: number): Promise<boolean> {
  return actOnDelivery(db, actor, purchaseId, {
    change: requestRefund,
    action: "billing.refund_requested",
  });
}

/** Switches a simulated meter fault on or off, for every room or one named by code. */
export async function switchSimulatedFault(
  db: Db,
  actor: StaffActor,
  input: { scope: string; on: boolean; building: string; room: string },
): Promise<void> {
  let roomId: number | null = null;
  if (input.scope === "room") {
    const room = await findRoomByCode(db, input.building, input.room, { all: true });
    if (!room) throw new DomainError("No such room", "找不到该楼栋编码和房间号的房间", "room");
    roomId = room.id;
  } else if (input.scope !== "all") {
    throw new DomainError("No scope", "请选择范围");
  }
  await audited(db, actor, async (trx) => {
    await setSimulatedFault(trx, roomId, input.on);
    const action = input.on ? "billing.sim_fault_on" : "billing.sim_fault_off";
    const audit = { action, targetType: "billing_sim", targetId: roomId ?? "all" };
    return { result: undefined, audit };
  });
}

/** 低余量提醒: sets or removes the threshold of a utility for rooms of one size. */
export async function changeThreshold(
  db: Db,
  actor: StaffActor,
  input: { utility: Utility; capacity: number; milliUnits: number | null },
): Promise<void> {
  await audited(db, actor, async (trx) => {
    const change = await setThreshold(trx, { ...input, staffId: actor.staffId });
    const audit = {
      action: "billing.low_credit_threshold",
      targetType: "billing_threshold",
      targetId: `${input.utility}:${input.capacity}`,
      before: { milliUnits: change.before },
      after: { milliUnits: change.after },
    };
    return { result: undefined, audit };
  });
}

/** 模拟计量系统: a room uses some of its simulated credit (to rehearse 电量不足). */
export async function useSimulated(
  db: Db,
  actor: StaffActor,
  input: { building: string; room: string; utility: Utility; fen: number },
): Promise<void> {
  const room = await findRoomByCode(db, input.building, input.room, { all: true });
  if (!room) throw new DomainError("No such room", "找不到该楼栋编码和房间号的房间", "room");
  await audited(db, actor, async (trx) => {
    const left = await useSimulatedCredit(trx, room.id, input.utility, input.fen);
    const audit = {
      action: "billing.sim_credit_used",
      targetType: "billing_sim",
      targetId: room.id,
      after: { utility: input.utility, used: input.fen, balance: left },
    };
    return { result: undefined, audit };
  });
}

import { sql } from "kysely";
import { readCsv } from "../platform/csv.ts";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import "./tables.ts";

/** A building of dormitories. */
export interface Building {
  id: number;
  code: string;
  name: string;
}

/** A room with its building, as pages show it. */
export interface Room {
  id: number;
  buildingId: number;
  buildingCode: string;
  buildingName: string;
  number: string;
  capacity: number;
  active: boolean;
}

/** "1号楼 305": how a room is named everywhere. */
export function roomLabel(room: { buildingName: string; number: string }): string {
  return `${room.buildingName} ${room.number}`;
}

const CODE_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$/;
const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,11}$/;

function checkBuilding(code: string, name: string): { code: string; name: string } {
  const c = code.trim().toUpperCase();
  const n = name.trim();
  if (!CODE_RE.test(c)) {
    throw new DomainError("Bad building code", "楼栋编码需为1-16位字母、数字、_ 或 -", "code");
  }
  // deno-lint-ignore no-control-regex
  if (!n || n.length > 30 || /[<>\u0000-\u001f]/.test(n)) {
    throw new DomainError("Bad building name", "请输入30字以内的楼栋名称（不含尖括号）", "name");
  }
  return { code: c, name: n };
}

function checkRoom(number: string, capacity: number): { number: string; capacity: number } {
  const n = number.trim().toUpperCase();
  if (!ROOM_RE.test(n)) {
    throw new DomainError("Bad room number", "房间号需为1-12位字母、数字或 -", "number");
  }
  if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 20) {
    throw new DomainError("Bad room capacity", "床位数需为1-20的整数", "capacity");
  }
  return { number: n, capacity };
}

/** Every building, by code. */
export async function listBuildings(db: Db): Promise<Building[]> {
  return await db.selectFrom("billing_buildings").select(["id", "code", "name"]).orderBy("code")
    .execute();
}

/** Buildings with at least one active room (what a student can choose from). */
export async function listOpenBuildings(db: Db): Promise<Building[]> {
  return await db.selectFrom("billing_buildings").select(["id", "code", "name"])
    .where((eb) =>
      eb.exists(
        eb.selectFrom("billing_rooms").select("billing_rooms.id")
          .whereRef("billing_rooms.building_id", "=", "billing_buildings.id")
          .where("billing_rooms.active", "=", true),
      )
    ).orderBy("code").execute();
}

/** One building by id, or null. */
export async function findBuilding(db: Db, id: number): Promise<Building | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await db.selectFrom("billing_buildings").select(["id", "code", "name"])
    .where("id", "=", id).executeTakeFirst()) ?? null;
}

/** Creates a building; the code must be new. */
export async function createBuilding(
  db: Db,
  input: { code: string; name: string },
): Promise<Building> {
  const b = checkBuilding(input.code, input.name);
  const taken = await db.selectFrom("billing_buildings").select("id").where("code", "=", b.code)
    .executeTakeFirst();
  if (taken) throw new DomainError("Building code taken", "该楼栋编码已存在", "code");
  return await db.insertInto("billing_buildings").values(b).returning(["id", "code", "name"])
    .executeTakeFirstOrThrow();
}

/** Renames a building. */
export async function renameBuilding(db: Db, id: number, name: string): Promise<Building> {
  const existing = await findBuilding(db, id);
  if (!existing) throw new NotFoundError(`building ${id}`);
  const b = checkBuilding(existing.code, name);
  return await db.updateTable("billing_buildings").set({ name: b.name }).where("id", "=", id)
    .returning(["id", "code", "name"]).executeTakeFirstOrThrow();
}

function roomQuery(db: Db) {
  return db.selectFrom("billing_rooms")
    .innerJoin("billing_buildings", "billing_buildings.id", "billing_rooms.building_id")
    .select([
      "billing_rooms.id",
      "billing_rooms.building_id as buildingId",
      "billing_buildings.code as buildingCode",
      "billing_buildings.name as buildingName",
      "billing_rooms.number",
      "billing_rooms.capacity",
      "billing_rooms.active",
    ]);
}

/** Rooms of a building, by number (active only unless `all`). */
export async function listRooms(
  db: Db,
  buildingId: number,
  options: { all?: boolean } = {},
): Promise<Room[]> {
  if (!Number.isSafeInteger(buildingId) || buildingId <= 0) return [];
  let q = roomQuery(db).where("billing_rooms.building_id", "=", buildingId);
  if (!options.all) q = q.where("billing_rooms.active", "=", true);
  return await q.orderBy(sql`length(billing_rooms.number)`).orderBy("billing_rooms.number")
    .execute();
}

/** One room by id, or null. */
export async function findRoom(db: Db, id: number): Promise<Room | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await roomQuery(db).where("billing_rooms.id", "=", id).executeTakeFirst()) ?? null;
}

/**
 * A room named as staff type it: building code and room number (any case); active rooms only
 * unless `all`. Null when either does not exist.
 */
export async function findRoomByCode(
  db: Db,
  buildingCode: string,
  roomNumber: string,
  options: { all?: boolean } = {},
): Promise<Room | null> {
  const code = buildingCode.trim().toUpperCase();
  const building = (await listBuildings(db)).find((b) => b.code === code);
  if (!building) return null;
  const number = roomNumber.trim().toUpperCase();
  return (await listRooms(db, building.id, options)).find((r) => r.number === number) ?? null;
}

/** Adds a room to a building; the number must be new in it. */
export async function createRoom(
  db: Db,
  input: { buildingId: number; number: string; capacity: number },
): Promise<Room> {
  const building = await findBuilding(db, input.buildingId);
  if (!building) throw new NotFoundError(`building ${input.buildingId}`);
  const r = checkRoom(input.number, input.capacity);
  const taken = await db.selectFrom("billing_rooms").select("id")
    .where("building_id", "=", building.id).where("number", "=", r.number).executeTakeFirst();
  if (taken) throw new DomainError("Room number taken", "该楼栋已有此房间号", "number");
  const row = await db.insertInto("billing_rooms")
    .values({ building_id: building.id, number: r.number, capacity: r.capacity })
    .returning("id").executeTakeFirstOrThrow();
  return (await findRoom(db, row.id))!;
}

/** Changes a room's capacity or takes it out of use (residents stay until moved). */
export async function updateRoom(
  db: Db,
  id: number,
  input: { capacity: number; active: boolean },
): Promise<Room> {
  const room = await findRoom(db, id);
  if (!room) throw new NotFoundError(`room ${id}`);
  const r = checkRoom(room.number, input.capacity);
  await db.updateTable("billing_rooms").set({ capacity: r.capacity, active: input.active })
    .where("id", "=", id).execute();
  return (await findRoom(db, id))!;
}

/** Result of a CSV import: what was created and which lines were refused (1-based). */
export interface ImportResult {
  buildingsCreated: number;
  roomsCreated: number;
  roomsExisting: number;
  errors: Array<{ line: number; message: string }>;
}

/** Largest CSV accepted: a campus has a few thousand rooms. */
export const MAX_IMPORT_LINES = 10_000;

/**
 * Imports rooms from CSV lines `楼栋编码,楼栋名称,房间号[,床位数]` (a header line starting with
 * 楼栋编码 or building is skipped). Missing buildings are created; existing rooms are left as
 * they are. Refused lines are reported and the rest imported, all in the caller's transaction.
 */
export async function importRoomsCsv(db: Db, text: string): Promise<ImportResult> {
  const result: ImportResult = {
    buildingsCreated: 0,
    roomsCreated: 0,
    roomsExisting: 0,
    errors: [],
  };
  const records = readCsv(text, { field: "csv" });
  if (records.length > MAX_IMPORT_LINES) {
    throw new DomainError("CSV too long", `一次最多导入${MAX_IMPORT_LINES}行`, "csv");
  }
  const buildings = new Map((await listBuildings(db)).map((b) => [b.code, b]));
  for (const [index, record] of records.entries()) {
    const cells = record.cells.map((s) => s.trim());
    if (index === 0 && /^(楼栋编码|building)/i.test(cells[0])) continue;
    const line = record.line;
    if (cells.length < 3 || cells.length > 4) {
      result.errors.push({ line, message: "需要3或4列：楼栋编码,楼栋名称,房间号[,床位数]" });
      continue;
    }
    try {
      const b = checkBuilding(cells[0], cells[1]);
      const capacity = cells[3] === undefined || cells[3] === "" ? 4 : Number(cells[3]);
      const r = checkRoom(cells[2], capacity);
      let building = buildings.get(b.code);
      if (!building) {
        building = await createBuilding(db, b);
        buildings.set(b.code, building);
        result.buildingsCreated++;
      }
      const inserted = await db.insertInto("billing_rooms")
        .values({ building_id: building.id, number: r.number, capacity: r.capacity })
        .onConflict((oc) => oc.columns(["building_id", "number"]).doNothing())
        .returning("id").executeTakeFirst();
      if (inserted) result.roomsCreated++;
      else result.roomsExisting++;
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      result.errors.push({ line, message: err.userMessage });
    }
  }
  return result;
}

/** The room a login account lives in, or null before it chose one. */
export async function findResidence(db: Db, accountId: number): Promise<Room | null> {
  const row = await db.selectFrom("billing_residents").select("room_id")
    .where("account_id", "=", accountId).executeTakeFirst();
  return row ? await findRoom(db, row.room_id) : null;
}

async function assertRoomHasSpace(db: Db, roomId: number): Promise<Room> {
  // Lock the room so two students choosing it at once cannot both take its last bed.
  const locked = await db.selectFrom("billing_rooms").select("id").where("id", "=", roomId)
    .forUpdate().executeTakeFirst();
  const room = locked ? await findRoom(db, roomId) : null;
  if (!room || !room.active) {
    throw new DomainError(`No active room ${roomId}`, "请选择有效的房间", "room");
  }
  const { n } = await db.selectFrom("billing_residents").select((eb) =>
    eb.fn.countAll<number>().as("n")
  )
    .where("room_id", "=", roomId).executeTakeFirstOrThrow();
  if (Number(n) >= room.capacity) {
    throw new DomainError(
      `Room ${roomId} is full`,
      "该房间已住满，请核对房间号或到一卡通中心办理",
      "room",
    );
  }
  return room;
}

/**
 * A student chooses their room, once. Changing it later is the card office's job
 * (`moveResident`). Run inside a transaction.
 */
export async function chooseRoom(db: Db, accountId: number, roomId: number): Promise<Room> {
  const existing = await db.selectFrom("billing_residents").select("room_id")
    .where("account_id", "=", accountId).forUpdate().executeTakeFirst();
  if (existing) {
    throw new DomainError(
      `Account ${accountId} already lives in room ${existing.room_id}`,
      "您已选择过宿舍房间，如需更换请到一卡通中心办理",
      "room",
    );
  }
  const room = await assertRoomHasSpace(db, roomId);
  const inserted = await db.insertInto("billing_residents").values({
    account_id: accountId,
    room_id: room.id,
  })
    .onConflict((oc) => oc.column("account_id").doNothing()).returning("account_id")
    .executeTakeFirst();
  if (!inserted) {
    throw new DomainError(
      "Room chosen concurrently",
      "您已选择过宿舍房间，如需更换请到一卡通中心办理",
      "room",
    );
  }
  return room;
}

/**
 * A student's choice on 选择宿舍: the room (and, when the form named one, it must be in that
 * building), chosen once, in its own transaction.
 */
export async function chooseRoomFromForm(
  db: Db,
  accountId: number,
  choice: { buildingId?: number; roomId: number },
): Promise<Room> {
  const room = Number.isSafeInteger(choice.roomId) ? await findRoom(db, choice.roomId) : null;
  if (!room || (choice.buildingId !== undefined && room.buildingId !== choice.buildingId)) {
    throw new DomainError("No such room to choose", "请选择房间", "room");
  }
  return await db.transaction().execute((trx) => chooseRoom(trx, accountId, room.id));
}

/** The card office places or moves a resident; returns the room before (null if none). */
export async function moveResident(
  db: Db,
  input: { accountId: number; roomId: number; staffId: number },
): Promise<{ before: Room | null; after: Room }> {
  const before = await findResidence(db, input.accountId);
  if (before?.id === input.roomId) {
    throw new DomainError("Same room", "该住户已在此房间", "room");
  }
  const after = await assertRoomHasSpace(db, input.roomId);
  await db.insertInto("billing_residents").values({
    account_id: input.accountId,
    room_id: after.id,
    moved_by_staff_id: input.staffId,
  }).onConflict((oc) =>
    oc.column("account_id").doUpdateSet({
      room_id: after.id,
      moved_by_staff_id: input.staffId,
      chosen_at: new Date(),
    })
  ).execute();
  return { before, after };
}

/** The card office removes a resident from their room (moved out); returns the room. */
export async function removeResident(db: Db, accountId: number): Promise<Room> {
  const before = await findResidence(db, accountId);
  if (!before) throw new DomainError("Not a resident", "该账号未登记宿舍房间");
  await db.deleteFrom("billing_residents").where("account_id", "=", accountId).execute();
  return before;
}

/** Residents of a room: their login account ids and when they moved in. */
export async function listResidents(db: Db, roomId: number) {
  return await db.selectFrom("billing_residents")
    .select([
      "account_id as accountId",
      "chosen_at as chosenAt",
      "moved_by_staff_id as movedByStaffId",
    ])
    .where("room_id", "=", roomId).orderBy("chosen_at").execute();
}

/** A building's rooms (in use or not) with how many residents each has. */
export async function listRoomsWithResidents(
  db: Db,
  buildingId: number,
): Promise<Array<Room & { residents: number }>> {
  const rooms = await listRooms(db, buildingId, { all: true });
  return await Promise.all(
    rooms.map(async (r) => ({ ...r, residents: (await listResidents(db, r.id)).length })),
  );
}

/** What the staff pages of billing read about people and rooms (no changes here). */
import type { Db } from "../platform/database.ts";
import { type BoundCard, findBoundCard } from "../card/mod.ts";
import { type Account, findAccount, findAccountByPhone } from "../account/mod.ts";
import { listSimulatedFaults } from "./meters.ts";
import { type Purchase, roomHistory } from "./purchases.ts";
import { findResidence, findRoom, listResidents, type Room, roomLabel } from "./rooms.ts";

/** A 手机号 typed on 宿舍住户: a well-formed one that names a login account. */
export const PHONE_RE = /^1\d{10}$/;

/** The login account with this 手机号, or null (an ill-formed number finds none). */
export async function accountByPhone(db: Db, phone: string): Promise<Account | null> {
  return PHONE_RE.test(phone) ? await findAccountByPhone(db, phone) : null;
}

/**
 * 宿舍住户's lookup: the account with that 手机号, its card and room, or why there is none
 * (`{ phone: message }`). No phone, no lookup.
 */
export async function residentByPhone(db: Db, phone: string): Promise<
  {
    found: { account: Account; card: BoundCard | null; room: string | null } | null;
    errors: Record<string, string>;
  }
> {
  if (!phone) return { found: null, errors: {} };
  if (!PHONE_RE.test(phone)) return { found: null, errors: { phone: "请输入11位手机号" } };
  const account = await findAccountByPhone(db, phone);
  if (!account) return { found: null, errors: { phone: "没有这个手机号的一信通账号" } };
  const card = await findBoundCard(db, account.id);
  const room = await findResidence(db, account.id);
  return { found: { account, card, room: room ? roomLabel(room) : null }, errors: {} };
}

/** A room's residents (手机号, name, 学号) and its electricity and water purchases, newest first. */
export async function roomWithResidents(db: Db, room: Room): Promise<{
  residents: Array<
    Awaited<ReturnType<typeof listResidents>>[number] & {
      phone: string;
      name: string | null;
      studentNumber: string | null;
    }
  >;
  history: Purchase[];
}> {
  const residents = await Promise.all((await listResidents(db, room.id)).map(async (r) => {
    const account = await findAccount(db, r.accountId);
    const card = await findBoundCard(db, r.accountId);
    return {
      ...r,
      phone: account?.phone ?? "",
      name: card?.name ?? null,
      studentNumber: card?.studentNumber ?? null,
    };
  }));
  const history = [
    ...(await roomHistory(db, room.id, "electricity", 50)),
    ...(await roomHistory(db, room.id, "water", 50)),
  ].sort((a, b) => b.id - a.id);
  return { residents, history };
}

/** The simulated meter system's switches: all rooms failing, and the rooms failing one by one. */
export async function simulatedFaults(db: Db): Promise<{
  all: boolean;
  rooms: Array<{ id: number; label: string; code: string; number: string }>;
}> {
  const faults = await listSimulatedFaults(db);
  const rooms = (await Promise.all(faults.roomIds.map((id) => findRoom(db, id))))
    .filter((r) => r !== null);
  return {
    all: faults.all,
    rooms: rooms.map((r) => ({
      id: r.id,
      label: roomLabel(r),
      code: r.buildingCode,
      number: r.number,
    })),
  };
}

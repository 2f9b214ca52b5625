import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { DomainError } from "../platform/errors.ts";
import type { TariffKind, TariffUnit } from "./tables.ts";
import "./tables.ts";

/** A tariff as it was in force: one row of the append-only tariff history. */
export interface Tariff {
  id: number;
  kind: TariffKind;
  unit: TariffUnit;
  fenPerUnit: number;
  preauthAmount: number | null;
  createdAt: Date;
}

/**
 * The shower tariff readers apply. `unit` is what the controller measures; a shower costs
 * `usage × fenPerUnit` fen (integers, no rounding), and `preauthAmount` fen is held on the card
 * when the shower starts. `tariffId` identifies the version in force, to record with the charge.
 */
export interface ShowerTariff {
  tariffId: number;
  unit: "liter" | "second";
  fenPerUnit: number;
  preauthAmount: number;
}

export const UNIT_LABELS: Record<TariffUnit, string> = {
  kwh: "度",
  ton: "吨",
  liter: "升",
  second: "秒",
};

export const KIND_LABELS: Record<TariffKind, string> = {
  electricity: "电费",
  water: "冷水",
  shower: "淋浴热水",
};

/** Units each tariff kind may be measured in. */
export const KIND_UNITS: Record<TariffKind, TariffUnit[]> = {
  electricity: ["kwh"],
  water: ["ton"],
  shower: ["liter", "second"],
};

type Row = {
  id: number;
  kind: TariffKind;
  unit: TariffUnit;
  fen_per_unit: number;
  preauth_amount: number | null;
  created_at: Date;
};

function toTariff(r: Row): Tariff {
  return {
    id: r.id,
    kind: r.kind,
    unit: r.unit,
    fenPerUnit: r.fen_per_unit,
    preauthAmount: r.preauth_amount,
    createdAt: r.created_at,
  };
}

/** The tariff of a kind in force now (the newest version). */
export async function currentTariff(db: Db, kind: TariffKind): Promise<Tariff> {
  const row = await db.selectFrom("billing_tariffs")
    .select(["id", "kind", "unit", "fen_per_unit", "preauth_amount", "created_at"])
    .where("kind", "=", kind).orderBy("id", "desc").limit(1).executeTakeFirst();
  if (!row) throw new Error(`Cannot find a ${kind} tariff: none configured`);
  return toTariff(row);
}

/** The shower tariff in force now, for shower controllers. */
export async function currentShowerTariff(db: Db): Promise<ShowerTariff> {
  const t = await currentTariff(db, "shower");
  return {
    tariffId: t.id,
    unit: t.unit as "liter" | "second",
    fenPerUnit: t.fenPerUnit,
    preauthAmount: t.preauthAmount ?? 0,
  };
}

/**
 * The shower tariff in force as SQL, for a reader's statement that starts a shower in one round
 * trip: one row (`id`, `fen_per_unit`, `preauth_amount`), the same version `currentShowerTariff`
 * reads.
 */
export function showerTariffSql(): RawBuilder<{
  id: number;
  fen_per_unit: number;
  preauth_amount: number | null;
}> {
  return sql`(select id, fen_per_unit, preauth_amount from billing_tariffs
    where kind = 'shower' order by id desc limit 1)`;
}

/** One tariff version by id (to show what a purchase was charged under). */
export async function findTariff(db: Db, id: number): Promise<Tariff | null> {
  const row = await db.selectFrom("billing_tariffs")
    .select(["id", "kind", "unit", "fen_per_unit", "preauth_amount", "created_at"])
    .where("id", "=", id).executeTakeFirst();
  return row ? toTariff(row) : null;
}

/** Every tariff version, newest first. */
export async function tariffHistory(db: Db, limit = 50): Promise<Tariff[]> {
  const rows = await db.selectFrom("billing_tariffs")
    .select(["id", "kind", "unit", "fen_per_unit", "preauth_amount", "created_at"])
    .orderBy("id", "desc").limit(limit).execute();
  return rows.map(toTariff);
}

/** Largest price per unit staff may set (¥1000): anything above is a typing mistake. */
const MAX_FEN_PER_UNIT = 100_000;
/** Largest shower pre-authorisation (¥100). */
const MAX_PREAUTH = 10_000;

/**
 * Puts a new tariff version in force. Validates the unit for the kind and the amounts; the
 * caller passes its transaction so the audit record commits with it.
 */
export async function setTariff(
  db: Db,
  input: {
    kind: TariffKind;
    unit: TariffUnit;
    fenPerUnit: number;
    preauthAmount?: number | null;
    staffId: number | null;
  },
): Promise<Tariff> {
  if (!(input.kind in KIND_UNITS)) {
    throw new DomainError("Bad tariff kind", "请选择费用类别", "kind");
  }
  if (!KIND_UNITS[input.kind].includes(input.unit)) {
    throw new DomainError("Bad tariff unit", "计量单位与费用类别不符", "unit");
  }
  if (
    !Number.isSafeInteger(input.fenPerUnit) || input.fenPerUnit <= 0 ||
    input.fenPerUnit > MAX_FEN_PER_UNIT
  ) {
    throw new DomainError("Bad tariff price", "单价需在 ¥0.01 至 ¥1000.00 之间", "price");
  }
  let preauth: number | null = null;
  if (input.kind === "shower") {
    const p = input.preauthAmount ?? NaN;
    if (!Number.isSafeInteger(p) || p <= 0 || p > MAX_PREAUTH) {
      throw new DomainError(
        "Bad preauth amount",
        "预授权金额需在 ¥0.01 至 ¥100.00 之间",
        "preauth",
      );
    }
    if (p < input.fenPerUnit) {
      throw new DomainError(
        "Preauth below one unit",
        "预授权金额不能低于一个计量单位的价格",
        "preauth",
      );
    }
    preauth = p;
  }
  const row = await db.insertInto("billing_tariffs").values({
    kind: input.kind,
    unit: input.unit,
    fen_per_unit: input.fenPerUnit,
    preauth_amount: preauth,
    created_by_staff_id: input.staffId,
  }).returning(["id", "kind", "unit", "fen_per_unit", "preauth_amount", "created_at"])
    .executeTakeFirstOrThrow();
  return toTariff(row);
}

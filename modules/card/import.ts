/**
 * Cardholder import (学号, 姓名, 身份证号, 芯片卡号, 类型) from an Excel workbook (.xlsx, its first
 * sheet with data) or CSV as the card office and the 教务系统 export it: UTF-8 with or without BOM,
 * GBK/GB18030, or UTF-16 "Unicode text"; comma or tab separated. Both go through the same rows,
 * checks and preview. A preview is stored (身份证 numbers already reduced to hash, mask and default-password
 * check) and committed in one transaction; the plan is computed again at commit against the
 * database as it is then, so re-importing the same file changes nothing.
 */
import { sql } from "kysely";
import { readTable } from "../platform/sheets.ts";
import type { Db } from "../platform/database.ts";
import { toHex } from "../security/mod.ts";
import { writeAudit } from "../staff/mod.ts";
import { findSchool } from "../account/mod.ts";
import { notifyBlocklistChange } from "./blocklist.ts";
import { CardError } from "./errors.ts";
import { type CardDeps, defaultPasswordCheck, idNumberHash } from "./passwords.ts";
import { type CardEventInput, insertCardEvents, loadCardAccount } from "./repository.ts";
import {
  defaultCardPassword,
  maskIdNumber,
  parseChipNumber,
  parseIdNumber,
  parseName,
  parseStudentNumber,
} from "./rules.ts";
import { replaceChip } from "./counter.ts";
import type { CardKind } from "./tables.ts";
import { cardTypesByName, typeNamed } from "./types.ts";

/** Files above this size are refused before parsing. */
export const MAX_IMPORT_BYTES = 10 * 1024 * 1024;
/** Rows above this count are refused (a whole school is a few tens of thousands). */
export const MAX_IMPORT_ROWS = 100_000;

/** A valid row, normalised; no 身份证 number in clear. */
export interface ImportRow {
  line: number;
  studentNumber: string;
  name: string;
  kind: CardKind;
  /** Its 卡类别 (by the 类型 column's name). */
  typeId: number;
  idHash: string;
  idMasked: string;
  defaultCheck: string;
  chipNumber: string;
}

/** A row that cannot be imported, and why (never echoing the 身份证 number). */
export interface ImportRowError {
  line: number;
  studentNumber: string;
  message: string;
}

/** What committing would do, row by row. */
export interface ImportPlan {
  create: ImportRow[];
  update: Array<{ row: ImportRow; cardAccountId: number; changes: string[] }>;
  reissue: Array<{ row: ImportRow; cardAccountId: number; oldChip: string | null }>;
  unchanged: number;
  errors: ImportRowError[];
}

const HEADERS: Record<string, keyof typeof COLUMNS> = {
  "学号": "studentNumber",
  "工号": "studentNumber",
  "学号/工号": "studentNumber",
  "姓名": "name",
  "身份证号": "idNumber",
  "身份证": "idNumber",
  "身份证号码": "idNumber",
  "芯片卡号": "chipNumber",
  "一卡通芯片卡号": "chipNumber",
  "类型": "kind",
  "人员类型": "kind",
};
const COLUMNS: Record<"studentNumber" | "name" | "idNumber" | "chipNumber" | "kind", string> = {
  studentNumber: "学号",
  name: "姓名",
  idNumber: "身份证号",
  chipNumber: "芯片卡号",
  kind: "类型",
};

/** The template's columns, in the order the import reads best (any order is accepted). */
export const TEMPLATE_HEADER = Object.values(COLUMNS);

/** The instructions sheet of the template workbook. */
export const TEMPLATE_NOTES = [
  "导入持卡人模板说明",
  "1. 在“持卡人”表中每行填写一名持卡人，第一行表头请勿修改；列的顺序可以调整。",
  "2. 学号（或工号）：4-20位数字或字母，在本校内唯一。",
  "3. 姓名：1-40个文字，不能含数字或符号。",
  "4. 身份证号：18位，最后一位可以是X。模板中该列已设为文本格式；如从其他表格粘贴，请使用“选择性粘贴 → 值”，不要让 Excel 把它变成数字（会丢失末几位）。",
  "5. 芯片卡号：卡片上印的芯片卡号，4-20位数字或字母（不是学号）。",
  "6. 类型：填写卡类别的名称，如“学生”“教职工”“临时卡”（系统 › 卡类别中列出的名称）。",
  "7. 上传后先预览：有错误的行会列出行号和原因并跳过，确认无误后再导入。重复导入同一文件不会产生变化；芯片卡号变化的按补卡处理（旧卡注销）。",
  "示例：2025090001 | 刘洋 | 530111200608084519 | 9100000001 | 学生",
];

/** Parses and validates a file's rows; file-level problems throw CardError. */
export async function readImportFile(
  deps: CardDeps,
  bytes: Uint8Array,
  types: Map<string, { id: number; kind: CardKind }>,
): Promise<{ rows: ImportRow[]; errors: ImportRowError[] }> {
  if (bytes.length === 0) throw new CardError("Empty import file", "文件为空", "file");
  if (bytes.length > MAX_IMPORT_BYTES) {
    throw new CardError("Import file too large", "文件过大（最大10MB）", "file");
  }
  const records = await readTable(bytes, { field: "file" });
  if (records.length < 2) throw new CardError("No data rows", "文件中没有数据行", "file");
  if (records.length - 1 > MAX_IMPORT_ROWS) {
    throw new CardError("Too many rows", `一次最多导入${MAX_IMPORT_ROWS}行`, "file");
  }
  const index: Partial<Record<keyof typeof COLUMNS, number>> = {};
  records[0].cells.forEach((h, i) => {
    const key = HEADERS[h.normalize("NFKC").trim()];
    if (key && index[key] === undefined) index[key] = i;
  });
  const missing = Object.entries(COLUMNS).filter(([k]) =>
    index[k as keyof typeof COLUMNS] === undefined
  )
    .map(([, label]) => label);
  if (missing.length) {
    throw new CardError(
      "Missing columns",
      `表头缺少列：${missing.join("、")}（需要：学号、姓名、身份证号、芯片卡号、类型）`,
      "file",
    );
  }
  const rows: ImportRow[] = [];
  const errors: ImportRowError[] = [];
  const seenStudent = new Map<string, number>();
  const seenChip = new Map<string, number>();
  for (let r = 1; r < records.length; r++) {
    const { cells, line, lossy } = records[r];
    const cell = (k: keyof typeof COLUMNS) => (cells[index[k]!] ?? "").slice(0, 200);
    const studentNumber = parseStudentNumber(cell("studentNumber"));
    const shownNumber = studentNumber ?? cell("studentNumber").slice(0, 20);
    const fail = (message: string) => errors.push({ line, studentNumber: shownNumber, message });
    // Excel keeps 15 digits of a number: an 18-digit 身份证 typed into a number cell is already
    // wrong, and its check digit may even pass by chance.
    const lost = (["idNumber", "chipNumber", "studentNumber"] as const)
      .find((k) => lossy?.includes(index[k]!));
    if (lost) {
      fail(
        `${COLUMNS[lost]}在 Excel 中被存成了数字，末几位已丢失：请把该列设为“文本”格式后重新填写`,
      );
      continue;
    }
    if (!studentNumber) {
      fail("学号格式不正确（4-20位数字或字母）");
      continue;
    }
    const name = parseName(cell("name"));
    if (!name) {
      fail("姓名格式不正确（1-40个文字，不能含数字或符号）");
      continue;
    }
    const idNumber = parseIdNumber(cell("idNumber"));
    if (!idNumber) {
      fail("身份证号不正确（18位，校验位需正确）");
      continue;
    }
    const chipNumber = parseChipNumber(cell("chipNumber"));
    if (!chipNumber) {
      fail("芯片卡号格式不正确（4-20位数字或字母）");
      continue;
    }
    const type = typeNamed(types, cell("kind"));
    if (!type) {
      fail(`类型不正确：没有名为“${cell("kind").trim().slice(0, 20)}”的卡类别`);
      continue;
    }
    if (seenStudent.has(studentNumber)) {
      fail(`学号与第${seenStudent.get(studentNumber)}行重复`);
      continue;
    }
    if (seenChip.has(chipNumber)) {
      fail(`芯片卡号与第${seenChip.get(chipNumber)}行重复`);
      continue;
    }
    seenStudent.set(studentNumber, line);
    seenChip.set(chipNumber, line);
    const idHash = await idNumberHash(deps, idNumber);
    rows.push({
      line,
      studentNumber,
      name,
      kind: type.kind,
      typeId: type.id,
      idHash,
      idMasked: maskIdNumber(idNumber),
      defaultCheck: await defaultPasswordCheck(deps, idHash, defaultCardPassword(idNumber)),
      chipNumber,
    });
  }
  return { rows, errors };
}

/** Compares valid rows with the school's card accounts and chips. */
export async function planImport(db: Db, schoolId: number, rows: ImportRow[]): Promise<ImportPlan> {
  const existing = new Map<string, {
    id: number;
    name: string;
    kind: CardKind;
    card_type_id: number;
    id_number_hash: string;
    status: string;
    chip: string | null;
  }>();
  const numbers = rows.map((r) => r.studentNumber);
  for (let i = 0; i < numbers.length; i += 5000) {
    const found = await db.selectFrom("card_accounts")
      .leftJoin(
        "card_chips",
        (j) =>
          j.onRef("card_chips.card_account_id", "=", "card_accounts.id").on(
            "card_chips.status",
            "<>",
            "cancelled",
          ),
      )
      .select([
        "card_accounts.id",
        "card_accounts.student_number",
        "card_accounts.name",
        "card_accounts.kind",
        "card_accounts.card_type_id",
        "card_accounts.id_number_hash",
        "card_accounts.status",
        "card_chips.chip_number",
      ])
      .where("card_accounts.school_id", "=", schoolId)
      .where(
        sql<boolean>`card_accounts.student_number = any(${numbers.slice(i, i + 5000)}::text[])`,
      )
      .execute();
    for (const f of found) existing.set(f.student_number, { ...f, chip: f.chip_number });
  }
  const chipOwners = new Map<string, { cardAccountId: number; status: string }>();
  const chips = rows.map((r) => r.chipNumber);
  for (let i = 0; i < chips.length; i += 5000) {
    const found = await db.selectFrom("card_chips").select([
      "chip_number",
      "card_account_id",
      "status",
    ])
      .where(sql<boolean>`chip_number = any(${chips.slice(i, i + 5000)}::text[])`).execute();
    for (const f of found) {
      chipOwners.set(f.chip_number, { cardAccountId: f.card_account_id, status: f.status });
    }
  }

  const plan: ImportPlan = { create: [], update: [], reissue: [], unchanged: 0, errors: [] };
  for (const row of rows) {
    const fail = (message: string) =>
      plan.errors.push({ line: row.line, studentNumber: row.studentNumber, message });
    const card = existing.get(row.studentNumber);
    const owner = chipOwners.get(row.chipNumber);
    if (!card) {
      if (owner) fail("芯片卡号已被其他一卡通账户使用");
      else plan.create.push(row);
      continue;
    }
    if (card.status === "cancelled") {
      fail("该一卡通账户已注销");
      continue;
    }
    const changes: string[] = [];
    if (card.name !== row.name) changes.push("姓名");
    if (card.kind !== row.kind || Number(card.card_type_id) !== row.typeId) changes.push("类型");
    if (card.id_number_hash !== row.idHash) changes.push("身份证号");
    if (card.chip !== row.chipNumber) {
      if (owner && owner.cardAccountId !== card.id) {
        fail("芯片卡号已被其他一卡通账户使用");
        continue;
      }
      if (owner) {
        fail("该芯片卡已注销，不能重新启用");
        continue;
      }
      plan.reissue.push({ row, cardAccountId: card.id, oldChip: card.chip });
    }
    if (changes.length) plan.update.push({ row, cardAccountId: card.id, changes });
    else if (card.chip === row.chipNumber) plan.unchanged++;
  }
  return plan;
}

/** Counts of a plan, for the preview and the audit log. */
export function planSummary(plan: ImportPlan) {
  return {
    created: plan.create.length,
    updated: plan.update.length,
    reissued: plan.reissue.length,
    unchanged: plan.unchanged,
    skipped: plan.errors.length,
  };
}

/** Reads a file and stores it as a pending import; returns its id. */
export async function previewImport(
  db: Db,
  deps: CardDeps,
  input: { schoolId: number; staffId: number; fileName: string; bytes: Uint8Array },
): Promise<number> {
  const school = await findSchool(db, input.schoolId);
  if (!school) throw new CardError("No such school", "请选择学校", "school_id");
  const { rows, errors } = await readImportFile(deps, input.bytes, await cardTypesByName(db));
  const row = await db.insertInto("card_imports").values({
    school_id: input.schoolId,
    staff_id: input.staffId,
    file_name: [...input.fileName].filter((ch) => ch >= " ").join("").slice(0, 200) || "import.csv",
    file_hash: toHex(
      new Uint8Array(await crypto.subtle.digest("SHA-256", input.bytes as BufferSource)),
    ),
    rows: JSON.stringify(rows),
    errors: JSON.stringify(errors),
    committed_at: null,
    result: null,
  }).returning("id").executeTakeFirstOrThrow();
  return row.id;
}

/** A stored import with its plan against the database as it is now. */
export async function loadImport(db: Db, id: number) {
  const imp = await db.selectFrom("card_imports")
    .select([
      "card_imports.id",
      "card_imports.school_id",
      "card_imports.file_name",
      "card_imports.rows",
      "card_imports.errors",
      "card_imports.created_at",
      "card_imports.committed_at",
      "card_imports.result",
    ])
    .where("card_imports.id", "=", id).executeTakeFirst();
  if (!imp) return null;
  const school = await findSchool(db, imp.school_id);
  if (!school) return null;
  const rows = imp.rows as ImportRow[];
  const plan = await planImport(db, imp.school_id, rows);
  plan.errors = [...(imp.errors as ImportRowError[]), ...plan.errors].sort((a, b) =>
    a.line - b.line
  );
  return {
    ...imp,
    school_name: school.name,
    total: rows.length + (imp.errors as ImportRowError[]).length,
    plan,
  };
}

/** Imports changing at least this many card accounts refresh the planner's statistics. */
const ANALYZE_AFTER_ROWS = 1000;

/**
 * Applies a pending import in one transaction: new card accounts with their chips, changed names,
 * types and 身份证 numbers, and changed chips as reissues (the old chip cancelled for good). Rows
 * with errors are skipped. Audited once with the counts; each card account's history gets an entry.
 */
export async function commitImport(
  db: Db,
  input: { importId: number; staffId: number; ip?: string | null },
): Promise<ReturnType<typeof planSummary>> {
  const { summary, version } = await db.transaction().execute(async (trx) => {
    const imp = await trx.selectFrom("card_imports").select([
      "id",
      "school_id",
      "rows",
      "errors",
      "committed_at",
    ])
      .where("id", "=", input.importId).forUpdate().executeTakeFirst();
    if (!imp) throw new CardError("No such import", "导入批次不存在", "_form");
    if (imp.committed_at) {
      throw new CardError("Import already committed", "该批次已导入，不能重复提交", "_form");
    }
    // Two imports of one school at once would plan against each other's half-done work.
    await sql`select pg_advisory_xact_lock(7240200, ${imp.school_id}::int)`.execute(trx);
    const plan = await planImport(trx, imp.school_id, imp.rows as ImportRow[]);
    plan.errors.push(...(imp.errors as ImportRowError[]));
    const events: CardEventInput[] = [];

    for (let i = 0; i < plan.create.length; i += 1000) {
      const batch = plan.create.slice(i, i + 1000);
      const created = await trx.insertInto("card_accounts").values(batch.map((r) => ({
        school_id: imp.school_id,
        student_number: r.studentNumber,
        name: r.name,
        kind: r.kind,
        card_type_id: r.typeId,
        id_number_hash: r.idHash,
        id_number_masked: r.idMasked,
        default_password_check: r.defaultCheck,
        password_hash: null,
        loss_reported_at: null,
        account_id: null,
        bound_at: null,
      }))).returning(["id", "student_number"]).execute();
      const ids = new Map(created.map((c) => [c.student_number, c.id]));
      await trx.insertInto("card_chips").values(batch.map((r) => ({
        card_account_id: ids.get(r.studentNumber)!,
        chip_number: r.chipNumber,
        status: "active" as const,
        lost_at: null,
        cancelled_at: null,
      }))).execute();
      for (const r of batch) {
        events.push({
          cardAccountId: ids.get(r.studentNumber)!,
          kind: "created",
          actor: "import",
          staffId: input.staffId,
          chipNumber: r.chipNumber,
          details: { importId: imp.id },
        });
      }
    }
    for (const u of plan.update) {
      await trx.updateTable("card_accounts").set({
        name: u.row.name,
        kind: u.row.kind,
        card_type_id: u.row.typeId,
        id_number_hash: u.row.idHash,
        id_number_masked: u.row.idMasked,
        default_password_check: u.row.defaultCheck,
        updated_at: new Date(),
      }).where("id", "=", u.cardAccountId).execute();
      events.push({
        cardAccountId: u.cardAccountId,
        kind: "updated",
        actor: "import",
        staffId: input.staffId,
        details: { importId: imp.id, changed: u.changes },
      });
    }
    let version: number | null = null;
    for (const r of plan.reissue) {
      const card = (await loadCardAccount(trx, r.cardAccountId, true))!;
      version = (await replaceChip(trx, card, r.row.chipNumber)) ?? version;
      events.push({
        cardAccountId: r.cardAccountId,
        kind: "reissued",
        actor: "import",
        staffId: input.staffId,
        chipNumber: r.row.chipNumber,
        details: { importId: imp.id, oldChip: r.oldChip },
      });
    }
    await insertCardEvents(trx, events);
    const summary = planSummary(plan);
    await trx.updateTable("card_imports").set({
      committed_at: new Date(),
      result: JSON.stringify(summary),
    })
      .where("id", "=", imp.id).execute();
    await writeAudit(trx, {
      staffId: input.staffId,
      action: "card.imported",
      targetType: "card_import",
      targetId: imp.id,
      before: null,
      after: {
        ...summary,
        schoolId: imp.school_id,
        updatedRows: plan.update.map((u) => ({
          studentNumber: u.row.studentNumber,
          changed: u.changes,
        })),
        reissuedRows: plan.reissue.map((r) => ({
          studentNumber: r.row.studentNumber,
          oldChip: r.oldChip,
          newChip: r.row.chipNumber,
        })),
      },
      ip: input.ip ?? null,
    });
    return { summary, version };
  });
  notifyBlocklistChange(version);
  // A large import changes the tables' sizes at once: refresh the planner's statistics now
  // rather than at autovacuum's next visit (prepared statements keep the plan they were made
  // with until then, and a first day's import starts from empty tables).
  if (summary.created + summary.updated + summary.reissued >= ANALYZE_AFTER_ROWS) {
    await sql`analyze card_accounts, card_chips`.execute(db).catch(() => {});
  }
  return summary;
}

/**
 * Excel workbooks (.xlsx) in and out, the one home for them beside csv.ts: uploads read into the
 * same records as a CSV file (`readTable` takes either), exports written with text as text (a 学号
 * keeps its leading zeros, nothing is ever a formula) and amounts as numbers. Reading and writing
 * are exceljs's; the library is loaded on first use, so a server that never touches a workbook
 * does not pay for it.
 */
import { DomainError } from "./errors.ts";
import { type CsvRecord, decodeCsv, readCsv } from "./csv.ts";

/** A workbook that cannot be read (not a workbook, too big unpacked, no sheet). */
export class SheetFormatError extends DomainError {
  override status = 422 as const;
  constructor(why: string, userMessage: string, field?: string) {
    super(`Cannot read workbook: ${why}`, userMessage, field);
  }
}

/** A record of a workbook: its cells as text, and which of them Excel had stored as long numbers. */
export interface SheetRecord extends CsvRecord {
  /**
   * Indexes of cells that held a number of 16 digits or more: Excel keeps 15 significant digits,
   * so a 身份证 or a long card number typed into a number cell has already lost its last digits.
   */
  lossy?: number[];
}

/** What a workbook may unpack to at most (its parts together); a 10 MB upload is far below. */
const MAX_UNPACKED = 200 * 1024 * 1024;

// deno-lint-ignore no-explicit-any
type ExcelJs = any;
let excel: Promise<ExcelJs> | null = null;

function exceljs(): Promise<ExcelJs> {
  excel ??= import("exceljs").then((m) => m.default ?? m);
  return excel;
}

/** True when the bytes are a zip archive (an .xlsx is one), by its first signature. */
export function isWorkbook(bytes: Uint8Array): boolean {
  return bytes.length > 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 &&
    bytes[3] === 0x04;
}

/**
 * The sum of the archive's unpacked sizes from its central directory, or null when the
 * directory cannot be read (a damaged file) or needs ZIP64 (no workbook of ours does).
 */
export function unpackedSize(bytes: Uint8Array): number | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stop = Math.max(0, bytes.length - 22 - 0xffff);
  for (let end = bytes.length - 22; end >= stop; end--) {
    if (view.getUint32(end, true) !== 0x06054b50) continue;
    const entries = view.getUint16(end + 10, true);
    let at = view.getUint32(end + 16, true);
    let total = 0;
    for (let i = 0; i < entries; i++) {
      if (at + 46 > bytes.length || view.getUint32(at, true) !== 0x02014b50) return null;
      const size = view.getUint32(at + 24, true);
      if (size === 0xffffffff) return null;
      total += size;
      at += 46 + view.getUint16(at + 28, true) + view.getUint16(at + 30, true) +
        view.getUint16(at + 32, true);
    }
    return total;
  }
  return null;
}

// deno-lint-ignore no-explicit-any
function cellText(value: any): { text: string; lossy: boolean } {
  if (value === null || value === undefined) return { text: "", lossy: false };
  if (typeof value === "string") return { text: value, lossy: false };
  if (typeof value === "number") {
    if (Number.isInteger(value)) {
      return {
        text: BigInt(value).toString(),
        lossy: Math.abs(value) >= 1e15,
      };
    }
    return { text: String(value), lossy: false };
  }
  if (typeof value === "boolean") return { text: value ? "TRUE" : "FALSE", lossy: false };
  if (value instanceof Date) return { text: value.toISOString().slice(0, 10), lossy: false };
  if (Array.isArray(value.richText)) {
    return {
      text: value.richText.map((r: { text?: string }) => r.text ?? "").join(""),
      lossy: false,
    };
  }
  if ("result" in value) return cellText(value.result);
  if (typeof value.text === "string") return { text: value.text, lossy: false };
  return { text: "", lossy: false };
}

/**
 * Reads the first worksheet with data into records (1-based row numbers as `line`, cells as
 * text, blank rows left out). Throws SheetFormatError, naming `field`, for a file that is not a
 * readable workbook.
 */
export async function readXlsx(
  bytes: Uint8Array,
  options: { field?: string } = {},
): Promise<SheetRecord[]> {
  const unpacked = unpackedSize(bytes);
  if (unpacked === null) {
    throw new SheetFormatError("damaged archive", "Excel 文件已损坏，无法读取", options.field);
  }
  if (unpacked > MAX_UNPACKED) {
    throw new SheetFormatError("too big unpacked", "Excel 文件内容过大，请分批导入", options.field);
  }
  const ExcelJS = await exceljs();
  const workbook = new ExcelJS.Workbook();
  try {
    await workbook.xlsx.load(bytes);
  } catch {
    throw new SheetFormatError(
      "not a workbook",
      "无法读取该 Excel 文件，请另存为 .xlsx 格式后重试",
      options.field,
    );
  }
  if (workbook.worksheets.length === 0) {
    throw new SheetFormatError(
      "no worksheet",
      "无法读取该 Excel 文件，请另存为 .xlsx 格式后重试",
      options.field,
    );
  }
  // deno-lint-ignore no-explicit-any
  const sheet = workbook.worksheets.find((ws: any) => ws.actualRowCount > 0);
  if (!sheet) return [];
  const records: SheetRecord[] = [];
  // deno-lint-ignore no-explicit-any
  sheet.eachRow({ includeEmpty: false }, (row: any, line: number) => {
    const cells: string[] = [];
    const lossy: number[] = [];
    for (let col = 1; col <= row.cellCount; col++) {
      const { text, lossy: bad } = cellText(row.getCell(col).value);
      cells.push(text);
      if (bad) lossy.push(col - 1);
    }
    while (cells.length && cells[cells.length - 1] === "") cells.pop();
    if (cells.some((c) => c.trim() !== "")) {
      records.push(lossy.length ? { line, cells, lossy } : { line, cells });
    }
  });
  return records;
}

/** An upload of a list: a workbook (.xlsx) or CSV text in any encoding csv.ts reads. */
export async function readTable(
  bytes: Uint8Array,
  options: { field?: string } = {},
): Promise<SheetRecord[]> {
  return isWorkbook(bytes) ? await readXlsx(bytes, options) : readCsv(decodeCsv(bytes), options);
}

/** How a column of a written workbook holds its values. */
export interface XlsxColumn {
  header: string;
  /** text: stored as text whatever it looks like; number; money: a number shown with 2 decimals. */
  kind: "text" | "number" | "money";
}

/** A worksheet's name as Excel allows it: 31 characters, none of []:*?/\. */
function sheetName(name: string): string {
  return name.replace(/[\[\]:*?/\\]/g, " ").slice(0, 31) || "Sheet1";
}

/**
 * Writes one worksheet: a bold, frozen header row and the rows below it. Text cells are written
 * as text (a leading "=" stays text; Excel never runs it), and a text column is formatted as text
 * so what someone types into it later stays text too (a 身份证 keeps its 18 digits); numbers as
 * numbers. `notes` adds a second sheet of lines (a template's instructions).
 */
export async function writeXlsx(
  name: string,
  columns: XlsxColumn[],
  rows: Array<Array<string | number | null>>,
  options: { notes?: { name: string; lines: string[] } } = {},
): Promise<Uint8Array> {
  const ExcelJS = await exceljs();
  const workbook = new ExcelJS.Workbook();
  workbook.creator = "校园一信通";
  const sheet = workbook.addWorksheet(sheetName(name), {
    views: [{ state: "frozen", ySplit: 1 }],
  });
  sheet.columns = columns.map((c, i) => {
    const longest = Math.max(
      c.header.length * 2,
      ...rows.slice(0, 200).map((r) => String(r[i] ?? "").length + 2),
    );
    return {
      header: c.header,
      width: Math.min(60, Math.max(8, longest)),
      style: c.kind === "money" ? { numFmt: "0.00" } : c.kind === "text" ? { numFmt: "@" } : {},
    };
  });
  sheet.getRow(1).font = { bold: true };
  for (const r of rows) sheet.addRow(r);
  if (options.notes) {
    const notes = workbook.addWorksheet(sheetName(options.notes.name));
    notes.columns = [{ width: 100 }];
    for (const line of options.notes.lines) notes.addRow([line]);
    notes.getRow(1).font = { bold: true };
  }
  return new Uint8Array(await workbook.xlsx.writeBuffer());
}

/**
 * CSV in and out, the one home for it: uploads (card office imports, gateway statements, room
 * lists) as Excel and WeChat save them, and exports that a spreadsheet opens safely. Parsing and
 * quoting are csv-parse's and csv-stringify's; this file adds the encodings Chinese offices use
 * and formula neutralisation.
 */
import iconv from "iconv-lite";
import { CsvError, parse } from "csv-parse/sync";
import { stringify } from "csv-stringify/sync";
import { DomainError } from "./errors.ts";

/** A CSV upload that cannot be read as CSV (an unclosed quote). */
export class CsvFormatError extends DomainError {
  override status = 422 as const;
  constructor(line: number, field?: string) {
    super(
      `Cannot read CSV: unclosed quote from line ${line}`,
      `CSV格式有误：第${line}行的引号没有闭合`,
      field,
    );
  }
}

/** One record of a CSV file and the line of the file it starts on (1-based). */
export interface CsvRecord {
  line: number;
  cells: string[];
}

/** Decodes an uploaded file: BOMs first (UTF-8, UTF-16), then strict UTF-8, else GB18030 (GBK). */
export function decodeCsv(bytes: Uint8Array): string {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return new TextDecoder("utf-8").decode(bytes.subarray(3));
  }
  if (bytes[0] === 0xff && bytes[1] === 0xfe) {
    return new TextDecoder("utf-16le").decode(bytes.subarray(2));
  }
  if (bytes[0] === 0xfe && bytes[1] === 0xff) {
    return new TextDecoder("utf-16be").decode(bytes.subarray(2));
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return iconv.decode(bytes as unknown as Buffer, "gb18030");
  }
}

const LINE_BREAK = /\r\n|\r|\n/g;

/**
 * Reads CSV text into records: RFC 4180 quoting, CRLF, LF or CR line ends (mixed too), a leading
 * BOM dropped, records of only blank cells left out. The separator is a comma, or a tab when the
 * first line has more tabs than commas (Excel's "Unicode text"). Throws CsvFormatError, naming
 * `field`, for an unclosed quote.
 */
export function readCsv(text: string, options: { field?: string } = {}): CsvRecord[] {
  const body = text.replace(/^\uFEFF/, "");
  const firstLine = body.slice(0, body.search(/\r|\n|$/));
  const tabs = firstLine.match(/\t/g)?.length ?? 0;
  const commas = firstLine.match(/,/g)?.length ?? 0;
  let lastLine = 0;
  const records: CsvRecord[] = [];
  try {
    parse(body, {
      delimiter: tabs > commas ? "\t" : ",",
      record_delimiter: ["\r\n", "\n", "\r"],
      relax_column_count: true,
      relax_quotes: true,
      on_record: (cells: string[], info) => {
        lastLine = info.lines;
        // csv-parse counts the line a record ends on; a quoted cell may span lines.
        const inside = cells.reduce((n, cell) => n + (cell.match(LINE_BREAK)?.length ?? 0), 0);
        if (cells.some((cell) => cell.trim() !== "")) {
          records.push({ line: lastLine - inside, cells });
        }
        return null;
      },
    });
  } catch (err) {
    // The only error the relaxed options leave: a quote opened after the last whole record.
    if (err instanceof CsvError) throw new CsvFormatError(lastLine + 1, options.field);
    throw err;
  }
  return records;
}

/** The records' cells only. */
export function parseCsv(text: string, options: { field?: string } = {}): string[][] {
  return readCsv(text, options).map((r) => r.cells);
}

/** A cell value of an export: text, or a number written as it is. */
export type CsvCell = string | number;

/** Text a spreadsheet would run as a formula (or hide behind a tab or carriage return). */
const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[+-]?\d+(\.\d+)?$/;

/** A text cell as a spreadsheet must read it: never as a formula (OWASP's leading quote). */
export function neutraliseCell(value: CsvCell): string {
  const s = String(value);
  if (typeof value === "number" || PLAIN_NUMBER.test(s)) return s;
  return FORMULA_START.test(s) ? `'${s}` : s;
}

/**
 * Writes rows as CSV for Excel: a BOM (so the Chinese is read as UTF-8), CRLF line ends, cells
 * quoted when they hold a comma, quote or line break, and no cell read as a formula.
 */
export function writeCsv(rows: CsvCell[][], options: { bom?: boolean } = {}): string {
  return stringify(rows.map((row) => row.map(neutraliseCell)), {
    bom: options.bom ?? true,
    record_delimiter: "windows",
    // csv-stringify quotes only the record delimiter itself; a bare LF or CR must be quoted too.
    quoted_match: /[\r\n]/,
  });
}

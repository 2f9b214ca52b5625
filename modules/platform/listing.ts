/**
 * The console's lists, one home for how they page and export: a page number read from the
 * query, the pager a list shows under itself (how many there are, which ones are on screen, the
 * way to the others), and a filtered list as a CSV or Excel file (the same filters, every row up
 * to EXPORT_MAX_ROWS). Views: `views/admin/_pager.eta`, `views/admin/_exports.eta`.
 */
import type { Context } from "hono";
import { z } from "zod";
import { writeCsv } from "./csv.ts";
import { fenToYuanText } from "./money.ts";
import { helpers } from "./views.ts";
import { writeXlsx, type XlsxColumn } from "./sheets.ts";

/** Rows on one page of a console list. */
export const PER_PAGE = 50;
/** An export stops here (a whole school's cards is a few tens of thousands). */
export const EXPORT_MAX_ROWS = 100_000;

/** Which rows a page shows. */
export interface Paging {
  page: number;
  perPage: number;
  offset: number;
}

/** The page asked for in the query (`page`, from 1; anything else is the first page). */
export const pageField = z.coerce.number().int().min(1).max(1_000_000).optional().catch(undefined);

/**
 * The rows of page `page` (1 when absent) of a list of `total` rows: a page past the end is the
 * last one (a list that shrank since its link was made still shows rows).
 */
export function paging(
  page: number | undefined,
  total = Number.POSITIVE_INFINITY,
  perPage = PER_PAGE,
): Paging {
  const last = Math.max(1, Math.ceil(total / perPage));
  const p = Math.min(last, page && Number.isSafeInteger(page) && page > 0 ? page : 1);
  return { page: p, perPage, offset: (p - 1) * perPage };
}

/** Every row of a list, for an export: up to EXPORT_MAX_ROWS. */
export const ALL_ROWS: Paging = { page: 1, perPage: EXPORT_MAX_ROWS, offset: 0 };

/** What a list says about itself under its rows. */
export interface Pager {
  total: number;
  page: number;
  pages: number;
  /** The first and last row on screen, 1-based (0 and 0 when there are none). */
  from: number;
  to: number;
  /** The pages to offer a link to (first, last, and two either side of this one); 0 is a gap. */
  links: number[];
  href(page: number): string;
}

/** The query text of `query` without empty values, with `extra` set. */
export function queryString(
  query: Record<string, string | number | undefined | null>,
  extra: Record<string, string | number> = {},
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...query, ...extra })) {
    if (v !== undefined && v !== null && String(v) !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The pager of a list of `total` rows at `paging`, linking to `path` with the list's filters. */
export function pager(
  path: string,
  query: Record<string, string | number | undefined | null>,
  total: number,
  p: Paging,
): Pager {
  const pages = Math.max(1, Math.ceil(total / p.perPage));
  const page = Math.min(p.page, pages);
  const from = total === 0 ? 0 : Math.min(total, p.offset + 1);
  const to = Math.min(total, p.offset + p.perPage);
  const wanted = new Set([1, pages]);
  for (let i = page - 2; i <= page + 2; i++) if (i >= 1 && i <= pages) wanted.add(i);
  const links: number[] = [];
  for (const n of [...wanted].sort((a, b) => a - b)) {
    if (links.length && n - links[links.length - 1] > 1) links.push(0);
    links.push(n);
  }
  const { page: _drop, ...filters } = query;
  return {
    total,
    page,
    pages,
    from,
    to,
    links,
    href: (n) => `${path}${queryString(filters, n > 1 ? { page: n } : {})}`,
  };
}

/** The export links of a list: the same path and filters, as CSV or as Excel. */
export function exportLinks(
  path: string,
  query: Record<string, string | number | undefined | null>,
): { csv: string; xlsx: string } {
  const { page: _drop, export: _format, ...filters } = query;
  return {
    csv: `${path}${queryString(filters, { export: "csv" })}`,
    xlsx: `${path}${queryString(filters, { export: "xlsx" })}`,
  };
}

/** `export=csv` or `export=xlsx` in a list's query; anything else shows the page. */
export const exportField = z.enum(["csv", "xlsx"]).optional().catch(undefined);

/** How a column's values are written: text, a whole number, fen as yuan, or a China time. */
export type ColumnKind = "text" | "int" | "yuan" | "time";

/** One column of an exported list. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | Date | null | undefined;
  kind?: ColumnKind;
}

/** A list as a file: its name (without extension) and columns. */
export interface Table<T> {
  /** The file's and the sheet's name, e.g. "审计日志" (a date is added). */
  name: string;
  columns: Column<T>[];
}

function cellText(kind: ColumnKind, v: string | number | Date | null | undefined): string | number {
  if (v === null || v === undefined) return "";
  if (kind === "yuan") return fenToYuanText(Number(v));
  if (kind === "time") return helpers.time(v as Date | string);
  if (kind === "int") return Number(v);
  return String(v);
}

/** The rows as CSV text (platform/csv.ts: BOM, CRLF, no cell read as a formula). */
export function tableCsv<T>(table: Table<T>, rows: T[]): string {
  return writeCsv([
    table.columns.map((c) => c.header),
    ...rows.map((r) => table.columns.map((c) => cellText(c.kind ?? "text", c.value(r)))),
  ]);
}

/** The rows as an .xlsx workbook: amounts as numbers in yuan, times as text, the rest as text. */
export async function tableXlsx<T>(table: Table<T>, rows: T[]): Promise<Uint8Array> {
  const columns: XlsxColumn[] = table.columns.map((c) => ({
    header: c.header,
    kind: c.kind === "yuan" ? "money" : c.kind === "int" ? "number" : "text",
  }));
  return await writeXlsx(
    table.name,
    columns,
    rows.map((r) =>
      table.columns.map((c) => {
        const v = c.value(r);
        if (v === null || v === undefined) return null;
        if (c.kind === "yuan") return Number(v) / 100;
        if (c.kind === "int") return Number(v);
        if (c.kind === "time") return helpers.time(v as Date | string);
        return String(v);
      })
    ),
  );
}

/** `attachment` with the file's Chinese name for browsers (RFC 6266) and an ASCII fallback. */
export function attachment(name: string, ext: string): string {
  const ascii = `export.${ext}`;
  return `attachment; filename="${ascii}"; filename*=UTF-8''${
    encodeURIComponent(`${name}.${ext}`)
  }`;
}

/** Answers with the rows as a CSV or Excel file named after the table and `suffix` (a date…). */
export async function exportTable<T>(
  c: Context,
  table: Table<T>,
  rows: T[],
  format: "csv" | "xlsx",
  suffix = "",
): Promise<Response> {
  const name = suffix ? `${table.name}-${suffix}` : table.name;
  if (format === "csv") {
    return c.body(tableCsv(table, rows), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": attachment(name, "csv"),
    });
  }
  const bytes = await tableXlsx(table, rows);
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
    "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "content-disposition": attachment(name, "xlsx"),
  });
}

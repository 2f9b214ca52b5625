/** Formats integer fen as "¥12.50" (negative as "-¥3.00"). */
export function formatFen(fen: number): string {
  if (!Number.isSafeInteger(fen)) throw new RangeError(`Cannot format ${fen} fen: not an integer`);
  const sign = fen < 0 ? "-" : "";
  const abs = Math.abs(fen);
  return `${sign}¥${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}

/** Formats integer fen as "12.50" with no currency sign. */
export function fenToYuanText(fen: number): string {
  return formatFen(fen).replace("¥", "");
}

/**
 * Parses an amount typed in yuan ("12", "12.5", "12.50") into integer fen without floating
 * point. Returns null for anything else: signs, exponents, more than two decimals, spaces inside.
 */
export function parseYuan(text: string): number | null {
  const m = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(text.trim());
  if (!m) return null;
  const fen = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
  return Number.isSafeInteger(fen) ? fen : null;
}

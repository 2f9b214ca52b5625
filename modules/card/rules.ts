/**
 * Formats of what a cardholder or the card office types: 学号, 身份证, 芯片卡号, names and card
 * passwords. Input is NFKC-normalised first, so full-width digits from a Chinese IME or an Excel
 * export read as ASCII; anything else unusual (zero-width characters, markup) fails the format.
 */

/** NFKC, trimmed, with inner whitespace removed (people type "5301 0219 ..."). */
export function normalizeCode(raw: string): string {
  return raw.normalize("NFKC").replace(/\s+/g, "");
}

/** A 学号: 4–20 letters or digits, upper-cased. Null when malformed. */
export function parseStudentNumber(raw: string): string | null {
  const s = normalizeCode(raw).toUpperCase();
  return /^[0-9A-Z]{4,20}$/.test(s) ? s : null;
}

/** A 芯片卡号: 4–20 letters or digits (decimal or hex serials), upper-cased. Null when malformed. */
export function parseChipNumber(raw: string): string | null {
  const s = normalizeCode(raw).toUpperCase();
  return /^[0-9A-Z]{4,20}$/.test(s) ? s : null;
}

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = "10X98765432";

/** The check character (GB 11643) of the first 17 digits of a 身份证 number. */
export function idCheckChar(first17: string): string {
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(first17[i]) * ID_WEIGHTS[i];
  return ID_CHECK[sum % 11];
}

/**
 * An 18-character 身份证 number with a final lower-case x taken as X, a real birth date and a
 * correct check character; null when malformed.
 */
export function parseIdNumber(raw: string): string | null {
  const s = normalizeCode(raw).toUpperCase();
  if (!/^\d{17}[\dX]$/.test(s)) return null;
  const y = Number(s.slice(6, 10));
  const m = Number(s.slice(10, 12));
  const d = Number(s.slice(12, 14));
  const date = new Date(Date.UTC(y, m - 1, d));
  if (
    y < 1900 || date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 ||
    date.getUTCDate() !== d
  ) {
    return null;
  }
  return idCheckChar(s.slice(0, 17)) === s[17] ? s : null;
}

/** 5301**********123X: the first and last four characters, for display. */
export function maskIdNumber(idNumber: string): string {
  return `${idNumber.slice(0, 4)}${"*".repeat(idNumber.length - 8)}${idNumber.slice(-4)}`;
}

/** The default card password: the last 6 characters of the 身份证 number, a final X upper-case. */
export function defaultCardPassword(idNumber: string): string {
  return idNumber.slice(-6).toUpperCase();
}

/**
 * A holder's name: letters of any script (Chinese, Latin, Uyghur, …), the middle dot of
 * transliterated names, spaces; 1–40 characters. Markup, quotes, digits and control characters
 * are refused.
 */
export function parseName(raw: string): string | null {
  const s = raw.normalize("NFC").trim().replace(/\s+/g, " ");
  if (s.length < 1 || s.length > 40) return null;
  return /^[\p{L}\p{M}·•・.\- ]+$/u.test(s) ? s : null;
}

/** 类型 of an import row: 学生 or 教职工 (and a few spellings Excel sheets use). */
export function parseKind(raw: string): "student" | "staff" | null {
  const s = raw.normalize("NFKC").trim().toLowerCase();
  if (["学生", "student", "本科生", "专科生", "研究生"].includes(s)) return "student";
  if (["教职工", "教工", "职工", "教师", "staff", "teacher"].includes(s)) return "staff";
  return null;
}

/**
 * Why a new card password is not acceptable, or null: 6 digits, not six equal digits, not a run
 * of consecutive digits, not the default (the caller checks that against the account).
 */
export function newCardPasswordProblem(password: string): string | null {
  if (!/^\d{6}$/.test(password)) return "新密码须为6位数字";
  if (/^(\d)\1{5}$/.test(password)) return "新密码不能是6位相同的数字";
  const digits = [...password].map(Number);
  const steps = new Set(digits.slice(1).map((d, i) => d - digits[i]));
  if (steps.size === 1 && (steps.has(1) || steps.has(-1))) return "新密码不能是连续的数字";
  return null;
}

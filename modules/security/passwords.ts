import { hash, verify } from "@node-rs/argon2";

/** Argon2id with OWASP's current minimum: 19 MiB memory, 2 iterations, 1 lane. */
const ARGON2ID = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

/** Hashes a login or staff password (Argon2id, OWASP parameters). */
export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2ID);
}

/** True when `password` matches `stored`; false for a malformed hash instead of throwing. */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

/**
 * Card passwords are 6 characters: a stolen hash alone could be brute-forced, so the hash also
 * takes a server-side pepper that is not in the database.
 */
export function hashCardPassword(password: string, pepper: string): Promise<string> {
  return hash(password, { ...ARGON2ID, secret: new TextEncoder().encode(pepper) });
}

/** Verifies a card password against its peppered hash. */
export async function verifyCardPassword(
  stored: string,
  password: string,
  pepper: string,
): Promise<boolean> {
  try {
    return await verify(stored, password, { secret: new TextEncoder().encode(pepper) });
  } catch {
    return false;
  }
}

/** Login password rule (manual: 字母加数字): 8–64 characters with both letters and digits. */
export function loginPasswordProblem(password: string): string | null {
  if (password.length < 8 || password.length > 64) return "登录密码长度需为8-64位";
  if (!/[A-Za-z]/.test(password) || !/\d/.test(password)) return "登录密码需同时包含字母和数字";
  // deno-lint-ignore no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(password)) return "登录密码不能包含空格或控制字符";
  return null;
}

const TEMP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";

/** A 10-character temporary password with letters and digits, no look-alike characters. */
export function temporaryPassword(): string {
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(10));
    // 256 is not a multiple of the alphabet: reject the biased tail.
    if (bytes.some((b) => b >= 224)) continue;
    const pw = Array.from(bytes, (b) => TEMP_ALPHABET[b % TEMP_ALPHABET.length]).join("");
    if (/[A-Za-z]/.test(pw) && /\d/.test(pw)) return pw;
  }
}

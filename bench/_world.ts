/**
 * Test data for the bench and the soak, built through the modules' public functions: a school,
 * cardholders with chips and a balance, merchants, registered readers with their keys, and
 * students signed in over HTTP with a bound card.
 */
import {
  createMerchant,
  type MerchantCategory,
  registerTerminal,
  type TerminalKind,
} from "../modules/merchant/mod.ts";
import { type Db, migrateToLatest, openDatabase } from "../modules/platform/mod.ts";
import { ensureSchool, registerAccount } from "../modules/account/mod.ts";
import { createCardAccountForTest, DEMO_SCHOOL } from "../modules/card/mod.ts";
import { creditTopUp, grantLots, subsidyFundingAccount } from "../modules/wallet/mod.ts";
import { createStaff, type Role } from "../modules/staff/mod.ts";
import { sql } from "kysely";
import type { SessionCookie } from "./_browser.ts";
import { WebClient } from "./_http.ts";

/** The secrets the server runs with (the bench derives reader keys from them). */
export interface Secrets {
  appSecret: string;
  cardPepper: string;
}

/** A cardholder of the bench: card account, chip, default card password. */
export interface Cardholder {
  cardAccountId: number;
  studentNumber: string;
  chipNumber: string;
  idNumber: string;
  defaultPassword: string;
}

/** A registered reader and its key. */
export interface Reader {
  terminalId: number;
  keyHex: string;
  kind: TerminalKind;
  merchantId: number;
}

/** Opens the server's database from the bench process (PostgreSQL; PGlite only while the server is down). */
export async function openWorld(
  databaseUrl: string | null,
  dataDir?: string,
): Promise<{ db: Db; close(): Promise<void> }> {
  const handle = await openDatabase({ databaseUrl, dataDir: dataDir ?? null, poolSize: 8 });
  await migrateToLatest(handle.db);
  return { db: handle.db, close: () => handle.close() };
}

/** A valid 18-character 身份证 number (made up, with its ISO 7064 check character). */
export function idNumberFor(n: number): string {
  const body = `530102${String(19900101 + (n % 28))}${String(n % 1000).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = body.split("").reduce((a, d, i) => a + Number(d) * weights[i], 0);
  return body + "10X98765432"[sum % 11];
}

/**
 * Creates `count` cardholders numbered from `first` with a starting balance (credited as a
 * top-up through the wallet, so the books balance).
 */
export async function createCardholders(
  db: Db,
  secrets: Secrets,
  options: { first: number; count: number; balance: number; tag: string },
): Promise<Cardholder[]> {
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const out: Cardholder[] = [];
  const make = async (i: number) => {
    const n = options.first + i;
    const idNumber = idNumberFor(n);
    const studentNumber = `B${String(n).padStart(9, "0")}`;
    const chip = `9${String(n).padStart(9, "0")}`;
    const r = await createCardAccountForTest(db, { config: secrets }, {
      schoolId: school.id,
      studentNumber,
      idNumber,
      chipNumber: chip,
      name: "压测学生",
    });
    if (options.balance > 0) {
      await creditTopUp(db, {
        cardAccountId: r.cardAccountId,
        amount: options.balance,
        method: "bench",
        reference: `bench-seed-${options.tag}-${n}`,
      });
    }
    out.push({
      cardAccountId: r.cardAccountId,
      studentNumber,
      chipNumber: r.chipNumber!,
      idNumber,
      defaultPassword: r.defaultPassword,
    });
  };
  // A few at a time: each card account hashes its default password check.
  for (let i = 0; i < options.count; i += 8) {
    await Promise.all(
      Array.from({ length: Math.min(8, options.count - i) }, (_, k) => make(i + k)),
    );
  }
  return out.sort((a, b) => a.cardAccountId - b.cardAccountId);
}

/** Creates a merchant and `count` readers of one kind for it. */
export async function createReaders(
  db: Db,
  secrets: Secrets,
  options: {
    code: string;
    name: string;
    category: MerchantCategory;
    kind: TerminalKind;
    count: number;
  },
): Promise<Reader[]> {
  const merchant = await createMerchant(db, {
    code: options.code,
    name: options.name,
    category: options.category,
  });
  const register = async (i: number): Promise<Reader> => {
    const { terminal, keyHex } = await registerTerminal(db, secrets.appSecret, {
      merchantId: merchant.id,
      kind: options.kind,
      name: `${options.name} ${i + 1}`,
    });
    return { terminalId: terminal.id, keyHex, kind: options.kind, merchantId: merchant.id };
  };
  // Eight at a time (thousands of readers for the memory measurement), in their numbered order.
  const readers: Reader[] = [];
  for (let i = 0; i < options.count; i += 8) {
    readers.push(
      ...await Promise.all(
        Array.from({ length: Math.min(8, options.count - i) }, (_, k) => register(i + k)),
      ),
    );
  }
  return readers;
}

/** A student signed in over HTTP with a card bound through the 一卡通账号绑定 page. */
export interface Student {
  web: WebClient;
  phone: string;
  password: string;
  accountId: number;
  card: Cardholder;
  cookies: SessionCookie[];
  cookieHeader: string;
  /** The CSRF token of the session (for htmx-style requests). */
  csrf: string;
}

/** Registers a login account for `card`, binds the card over HTTP and signs in again. */
export async function signedInStudent(
  db: Db,
  baseUrl: string,
  card: Cardholder,
  phone: string,
): Promise<Student> {
  const password = "Bench12345";
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const accountId = await registerAccount(db, { phone, password, schoolId: school.id });
  const web = new WebClient(baseUrl);
  await login(web, phone, password);
  const bound = await web.submit("/security/bind", "/security/bind", {
    student_number: card.studentNumber,
    password: card.defaultPassword,
  });
  if (bound.res.status !== 200 || !bound.text.includes("绑定成功")) {
    throw new Error(
      `Binding ${card.studentNumber} answered ${bound.res.status}: ${bound.text.slice(0, 200)}`,
    );
  }
  // The manual: 绑定成功后需要重新登录.
  await login(web, phone, password);
  const home = await web.get("/wallet");
  if (home.res.status !== 200) throw new Error(`/wallet answered ${home.res.status} after binding`);
  const csrf = /x-csrf-token"\s*:\s*"([^"]+)"/i.exec(home.text)?.[1] ?? "";
  const cookies = [...web.cookies].map(([name, value]) => ({ name, value }));
  return { web, phone, password, accountId, card, cookies, cookieHeader: web.cookieHeader, csrf };
}

async function login(web: WebClient, phone: string, password: string): Promise<void> {
  const r = await web.submit("/login", "/login", { phone, password });
  if (r.res.status !== 303 || !web.cookies.has("yxt_sid")) {
    throw new Error(`Login of ${phone} answered ${r.res.status}: ${r.text.slice(0, 200)}`);
  }
}

/** Creates a staff member with `roles` and signs them in over HTTP at /admin/login. */
export async function signedInStaff(
  db: Db,
  baseUrl: string,
  options: { username: string; name: string; roles: Role[] },
): Promise<WebClient> {
  const password = "Soak-Staff-2026";
  await createStaff(db, { ...options, password, mustChangePassword: false });
  const web = new WebClient(baseUrl);
  const r = await web.submit("/admin/login", "/admin/login", {
    username: options.username,
    password,
  });
  if (r.res.status !== 303) {
    throw new Error(
      `Staff login of ${options.username} answered ${r.res.status}: ${r.text.slice(0, 200)}`,
    );
  }
  return web;
}

/** The load cards' purses: `cashOnly` (bench --cash-only) leaves out their 补助 lots. */
export const loadPurses = { cashOnly: false };

/**
 * Readers of one load kind under their own merchant, each with `cardsPerReader` cards of its own
 * (numbered from `first`) holding `balance` fen; the tables are analysed afterwards, as
 * autovacuum long has in a real deployment (a plan made on empty statistics would be the wrong one).
 */
export async function createLoadReaders(
  db: Db,
  secrets: Secrets,
  options: {
    kind: "card" | "qr" | "shower";
    count: number;
    cardsPerReader: number;
    first: number;
    balance: number;
  },
): Promise<Array<Reader & { cards: Array<{ cardAccountId: number; chip: string }> }>> {
  const shape = {
    card: { category: "canteen", kind: "canteen_pos", name: "压测食堂" },
    qr: { category: "canteen", kind: "qr_scanner", name: "压测扫码" },
    shower: { category: "shower", kind: "shower", name: "压测浴室" },
  } as const;
  const readers = await createReaders(db, secrets, {
    code: `BENCH-${options.kind.toUpperCase()}`,
    name: shape[options.kind].name,
    category: shape[options.kind].category,
    kind: shape[options.kind].kind,
    count: options.count,
  });
  const cards = await createCardholders(db, secrets, {
    first: options.first,
    count: options.count * options.cardsPerReader,
    balance: options.balance,
    tag: `load-${options.kind}`,
  });
  // Both purses in play: half of each card's money is 补助 (spent first), the rest cash — unless
  // the run compares with a release that had no 补助 (`--cash-only`).
  if (!loadPurses.cashOnly) {
    await grantSubsidy(db, cards.map((c) => c.cardAccountId), {
      amount: Math.floor(options.balance / 2),
      until: new Date(Date.now() + 30 * 86400_000),
      categories: [shape[options.kind].category],
      tag: `load-${options.kind}`,
    });
  }
  await sql`analyze card_accounts, card_chips, ledger_accounts, payment_codes, terminals, purse_lots`
    .execute(
      db,
    );
  return readers.map((r, i) => ({
    ...r,
    cards: cards.slice(i * options.cardsPerReader, (i + 1) * options.cardsPerReader)
      .map((c) => ({ cardAccountId: c.cardAccountId, chip: c.chipNumber })),
  }));
}

/**
 * Grants each card a 补助 lot of `amount` from the demo school's 补助资金, spendable at
 * `categories` from an hour ago until `until` (references `bench-subsidy-<tag>-<card>`: granted
 * once).
 */
export async function grantSubsidy(
  db: Db,
  cards: number[],
  grant: { amount: number; until: Date; categories: string[]; tag: string },
): Promise<void> {
  if (grant.amount <= 0 || cards.length === 0) return;
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  await db.transaction().execute(async (trx) => {
    await grantLots(
      trx,
      {
        purse: "subsidy",
        fundingAccountId: await subsidyFundingAccount(trx, school),
        batchId: null,
        validFrom: new Date(Date.now() - 3600_000),
        validUntil: grant.until,
        categories: grant.categories,
      },
      cards.map((c) => ({
        cardAccountId: c,
        amount: grant.amount,
        reference: `bench-subsidy-${grant.tag}-${c}`,
      })),
    );
  });
}

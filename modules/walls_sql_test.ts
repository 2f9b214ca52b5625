/**
 * Walls hold in SQL too (docs/ARCHITECTURE.md, "Layout and walls"): every table belongs to the
 * module whose tables.ts declares it, and a module's SQL names only its own tables; anything else
 * it needs it asks of the owner's mod.ts. The import walls (platform/walls_test.ts) cannot see a
 * table named in a query, so these tests read the SQL: the tables named by Kysely's builders
 * (`selectFrom("x")`, `leftJoin("x as y")`, …) and in `sql` text (`from x`, `join x`, `update x`,
 * `into x`).
 *
 * The one exception is a reader's hot path (and the two student pages the bench measures), where
 * one statement reads across modules so a payment costs one round trip and one commit, or checks
 * in the statement that moves money what a second statement could let change in between. There
 * the owner hands out its own SQL (its text stays in its module) through a door of its mod.ts,
 * and only the modules listed below may take it. The list is the one place these are named.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Doors that hand SQL across a wall (or take the caller's SQL into their statement). */
const SQL_DOORS: Array<{ owner: string; names: string[]; users: string[]; reason: string }> = [
  {
    owner: "card",
    names: ["payableChipSql", "payableChipOfSql"],
    users: ["terminal"],
    reason:
      "a reader's card payment (one or a group-committed batch) and a shower start look the " +
      "chip up in the statement that moves the money: one round trip, and a chip reported lost " +
      "meanwhile cannot pay",
  },
  {
    owner: "billing",
    names: ["showerTariffSql"],
    users: ["terminal"],
    reason: "a shower start holds the tariff's pre-authorisation in the same statement that " +
      "reads the tariff in force",
  },
  {
    owner: "merchant",
    names: ["merchantRowSql"],
    users: ["wallet"],
    reason: "every card debit to a merchant (readers' payments, codes, shower starts) refuses " +
      "an inactive merchant in the statement that moves the money",
  },
  {
    owner: "card",
    names: ["paymentCodeFrozenSql"],
    users: ["wallet"],
    reason: "a payment code frozen with a loss report is refused in the statement that redeems it",
  },
  {
    owner: "wallet",
    names: [
      "payFromCardsRecorded",
      "redeemPaymentCodesRecorded",
      "holdFundsRecorded",
      "settleHoldRecorded",
    ],
    users: ["terminal"],
    reason: "a reader's request record (terminal's SQL) commits in the statement that moves its " +
      "money: one round trip and one commit per request, or per batch of card or 付款码 payments",
  },
  {
    owner: "wallet",
    names: ["merchantMovements"],
    users: ["finance"],
    reason: "商户结算 reads a merchant's movements except those its statements hold already " +
      "(finance's SQL of its own lines, taken into the wallet's query): a statement never " +
      "fetches a whole history of payments to drop what was settled",
  },
  {
    owner: "card",
    names: ["boundCardSql", "findBoundCardWith", "readBoundCard"],
    users: ["wallet"],
    reason: "余额 /wallet (with the session check) and 付款码 refresh, the two student pages " +
      "deno task bench measures, read the bound card and its money in one statement",
  },
  {
    owner: "card",
    names: ["priceInForceSql", "cardTypeLimitSql"],
    users: ["wallet"],
    reason: "a reader's payment is priced (卡类别, 餐次) and held to its type's limits in the " +
      "statement that takes the money: one round trip per group-committed batch, and the " +
      "meal period's cap counted on the row the payment locks",
  },
  {
    owner: "security",
    names: ["studentPageQuery"],
    users: ["wallet"],
    reason: "余额 /wallet checks the session in the statement that reads the page",
  },
];

/** Not the product: tests, their helpers, the reader simulator (a developer's tool). */
function isProduct(rel: string): boolean {
  return !/_test\.ts$|\/_test_support\.ts$|\/_testing\.ts$|^modules\/platform\/testing\.ts$/
    .test(rel) && !rel.startsWith("modules/testkit/") && !rel.startsWith("terminal/sim/");
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* sourceFiles(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

/** "modules/card/service.ts" → "card"; "terminal/server.ts" → "terminal". */
function moduleOf(rel: string): string | null {
  const m = /^modules\/([a-z_]+)\//.exec(rel);
  if (m) return m[1];
  return rel.startsWith("terminal/") ? "terminal" : null;
}

async function productFiles(): Promise<Array<{ rel: string; module: string; text: string }>> {
  const out = [];
  for (const top of ["modules", "terminal"]) {
    for await (const file of sourceFiles(join(ROOT, top))) {
      const rel = relative(ROOT, file);
      const module = moduleOf(rel);
      if (module && isProduct(rel)) out.push({ rel, module, text: await Deno.readTextFile(file) });
    }
  }
  return out;
}

/** Every table and its owner, from the `interface Database { … }` of each tables.ts. */
async function tableOwners(): Promise<Map<string, string>> {
  const owners = new Map<string, string>();
  for (const { rel, module, text } of await productFiles()) {
    if (!rel.endsWith("/tables.ts")) continue;
    const body = /interface Database\s*\{([^}]*)\}/.exec(text)?.[1] ?? "";
    for (const m of body.matchAll(/^\s*([a-z_][a-z0-9_]*)\s*:/gm)) {
      assert.ok(!owners.has(m[1]), `${m[1]} is declared by ${owners.get(m[1])} and ${module}`);
      owners.set(m[1], module);
    }
  }
  return owners;
}

/** The source without comments: a comment may name a table without reading it. */
function withoutComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

/** The tables a source names in its queries. */
function tablesNamed(text: string, tables: string[]): Set<string> {
  const names = tables.join("|");
  const builder = new RegExp(
    `\\.(?:selectFrom|insertInto|updateTable|deleteFrom|innerJoin|leftJoin|rightJoin|fullJoin|` +
      `mergeInto|using)\\(\\s*["'\`](${names})(?![a-z0-9_])`,
    "g",
  );
  const text_ = new RegExp(`\\b(?:from|join|update|into)\\s+(${names})(?![a-z0-9_])`, "gi");
  const code = withoutComments(text);
  return new Set([...code.matchAll(builder), ...code.matchAll(text_)].map((m) => m[1]));
}

Deno.test("tables.ts files declare every table once and the scan sees queries", async () => {
  const owners = await tableOwners();
  assert.equal(owners.get("ledger_transfers"), "wallet");
  assert.equal(owners.get("card_accounts"), "card");
  assert.equal(owners.get("terminal_requests"), "terminal");
  const tables = [...owners.keys()];
  // The scan itself: what it must see and what it must not.
  assert.deepEqual(
    [...tablesNamed(`db.selectFrom("merchants as m").leftJoin("card_chips", "x", "y")`, tables)],
    ["merchants", "card_chips"],
  );
  assert.deepEqual(
    [...tablesNamed(
      "sql`select 1 from staff s join schools on true; update throttles set`",
      tables,
    )],
    ["staff", "schools", "throttles"],
  );
  assert.deepEqual(
    [...tablesNamed("// reads from merchants\n/* join staff */ const staff_name = 1;", tables)],
    [],
  );
});

Deno.test("a module's SQL names only its own tables", async () => {
  const owners = await tableOwners();
  const tables = [...owners.keys()];
  const breaches: string[] = [];
  for (const { rel, module, text } of await productFiles()) {
    for (const table of tablesNamed(text, tables)) {
      if (owners.get(table) !== module) {
        breaches.push(`${rel} names ${table} (${owners.get(table)}'s)`);
      }
    }
  }
  assert.deepEqual(breaches.sort(), []);
});

Deno.test("only the listed doors hand SQL across a wall, and only to their listed users", async () => {
  const owners = await tableOwners();
  const owning = new Set(owners.values());
  const files = await productFiles();
  const doorOf = new Map<string, (typeof SQL_DOORS)[number]>();
  for (const door of SQL_DOORS) {
    for (const name of door.names) doorOf.set(`${door.owner}.${name}`, door);
  }
  const problems: string[] = [];
  for (const { rel, module, text } of files) {
    if (!/(^|\/)mod\.ts$/.test(rel) || !owning.has(module)) continue;
    const exported = new Set<string>();
    for (const m of text.matchAll(/export\s*\{([^}]*)\}/g)) {
      for (const part of m[1].split(",")) {
        const name = part.trim().replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim();
        if (name) exported.add(name);
      }
    }
    for (const m of text.matchAll(/export\s+(?:async\s+)?(?:function|const)\s+([A-Za-z0-9_]+)/g)) {
      exported.add(m[1]);
    }
    for (const name of exported) {
      if (/Sql$/.test(name) && !doorOf.has(`${module}.${name}`)) {
        problems.push(`${rel} hands out ${name}, which modules/walls_sql_test.ts does not list`);
      }
    }
    for (const door of SQL_DOORS.filter((d) => d.owner === module)) {
      for (const name of door.names) {
        if (!exported.has(name)) problems.push(`${module} no longer exports ${name}: unlist it`);
      }
    }
  }
  for (const { rel, module, text } of files) {
    const imports = text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*["']([^"']+)["']/g);
    for (const m of imports) {
      const from = moduleOf(relative(ROOT, resolve(dirname(join(ROOT, rel)), m[2])));
      if (!from || from === module) continue;
      for (const part of m[1].split(",")) {
        const name = part.trim().replace(/^type\s+/, "").split(/\s+as\s+/)[0].trim();
        const door = doorOf.get(`${from}.${name}`);
        if (door && !door.users.includes(module)) {
          problems.push(`${rel} takes ${from}'s ${name}, listed only for ${door.users.join(", ")}`);
        }
      }
    }
  }
  assert.deepEqual(problems, []);
});

/**
 * The Citus plan in docs/OPERATIONS.md ("Every table and its tenant key") stays true: it lists
 * every table of the migrated schema, no table that is gone, and only key columns that exist.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { createTestDatabase } from "../modules/platform/testing.ts";

const DOC = new URL("../docs/OPERATIONS.md", import.meta.url);

interface Plan {
  citus: "distributed" | "reference" | "local";
  /** Columns the plan names in this table (today's tenant key, the parent it comes from, or its own key). */
  columns: string[];
}

/** The table of the plan, read from the document. */
function readPlan(text: string): Map<string, Plan> {
  const section = text.split("### Every table and its tenant key")[1];
  assert.ok(section, "docs/OPERATIONS.md has no 'Every table and its tenant key' section");
  const plan = new Map<string, Plan>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 5 || cells[1] === "table" || /^-+$/.test(cells[1])) continue;
    const [, table, citus, key] = cells;
    assert.ok(!plan.has(table), `${table} is listed twice`);
    assert.ok(
      ["distributed", "reference", "local"].includes(citus),
      `${table}: "${citus}" is not distributed, reference or local`,
    );
    let columns: string[] = [];
    if (citus === "distributed") {
      const m = /^school_id$/.exec(key) ?? /^school_id ← ([a-z_]+|\(new column\))$/.exec(key) ??
        /^own: ([a-z_]+)$/.exec(key);
      assert.ok(
        m,
        `${table}: tenant key "${key}" is not school_id, school_id ← column, or own: column`,
      );
      columns = key === "school_id" ? ["school_id"] : m[1] === "(new column)" ? [] : [m[1]];
    } else {
      assert.equal(key, "—", `${table}: a ${citus} table has no tenant key`);
    }
    plan.set(table, { citus: citus as Plan["citus"], columns });
  }
  return plan;
}

Deno.test("the Citus plan lists every table with its tenant key, or marks it shared", async () => {
  const plan = readPlan(await Deno.readTextFile(DOC));
  const h = await createTestDatabase();
  try {
    const rows = await sql<{ table_name: string; column_name: string }>`
      select c.table_name, c.column_name
      from information_schema.columns c
      join information_schema.tables t using (table_schema, table_name)
      where c.table_schema = 'public' and t.table_type = 'BASE TABLE'`.execute(h.db);
    const columns = new Map<string, Set<string>>();
    for (const r of rows.rows) {
      columns.set(r.table_name, (columns.get(r.table_name) ?? new Set()).add(r.column_name));
    }
    const missing = [...columns.keys()].filter((t) => !plan.has(t)).sort();
    assert.deepEqual(missing, [], `tables without a line in docs/OPERATIONS.md: ${missing}`);
    const gone = [...plan.keys()].filter((t) => !columns.has(t)).sort();
    assert.deepEqual(gone, [], `lines in docs/OPERATIONS.md for tables that do not exist: ${gone}`);
    for (const [table, p] of plan) {
      for (const c of p.columns) {
        assert.ok(columns.get(table)!.has(c), `${table}.${c} (named by the plan) does not exist`);
      }
    }
    // The tables that have the tenant key today are the ones the plan says have it.
    const today = [...columns].filter(([, cs]) => cs.has("school_id")).map(([t]) => t).sort();
    const planned = [...plan].filter(([, p]) => p.columns[0] === "school_id").map(([t]) => t)
      .sort();
    assert.deepEqual(planned, today);
  } finally {
    await h.close();
  }
});

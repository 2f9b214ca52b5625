import assert from "node:assert/strict";
import { parseCsv } from "../platform/csv.ts";
import { readXlsx } from "../platform/sheets.ts";
import { makeStaff, setupApp } from "../testkit/mod.ts";
import { AUDIT_ACTIONS, AUDIT_TARGETS } from "./audit_labels.ts";
import { auditDiff } from "./audit.ts";
import { ROLES, writeAudit } from "./mod.ts";

async function seedAudit(w: Awaited<ReturnType<typeof setupApp>>) {
  const clerk = await makeStaff(w, "clerk", [ROLES.cardOffice]);
  const fin = await makeStaff(w, "fin", [ROLES.finance]);
  const at = (day: string) => new Date(`${day}T10:00:00+08:00`);
  const rows: Array<[number, string, string, string, unknown, unknown, Date]> = [
    [clerk.id, "card.loss_reported", "card_account", "7", { status: "normal", name: "张三" }, {
      status: "loss_reported",
      name: "张三",
    }, at("2026-06-01")],
    [clerk.id, "card.reissued", "card_account", "7", null, { chips: ["A1"] }, at("2026-06-02")],
    [fin.id, "finance.refund", "transfer", "42", null, { amount: 300 }, at("2026-06-03")],
    [fin.id, "finance.adjustment_approved", "adjustment", "5", null, null, at("2026-06-20")],
  ];
  for (const [staffId, action, targetType, targetId, before, after, when] of rows) {
    await writeAudit(w.db, {
      staffId,
      action,
      targetType,
      targetId,
      before,
      after,
      ip: "10.0.0.9",
    });
    await w.db.updateTable("audit_log").set({ at: when }).where("action", "=", action).execute();
  }
  return await makeStaff(w, "boss", [ROLES.sysadmin]);
}

/** The 操作 cells of the audit table, in order. */
function actions(html: string): string[] {
  return [...html.matchAll(/<small class="code">([^<]+)<\/small>/g)].map((m) => m[1]);
}

Deno.test("审计日志 filters by Chinese-labelled action (a module or one action), object, staff and China days", async () => {
  await using w = await setupApp();
  const boss = await seedAudit(w);
  const page = await boss.client.page("/admin/audit");
  assert.match(page, /<optgroup label="一卡通">/);
  assert.match(page, /<option value="card\.">一卡通 · 全部<\/option>/);
  assert.match(page, /<option value="card\.loss_reported">挂失<\/option>/);
  assert.match(page, /<option value="transfer">交易流水<\/option>/);
  assert.match(page, /共 <strong>[0-9]+<\/strong> 条/);

  const q = (s: string) => boss.client.page(`/admin/audit?${s}`);
  assert.deepEqual(actions(await q("action=card.")), ["card.reissued", "card.loss_reported"]);
  assert.deepEqual(actions(await q("action=card.reissued")), ["card.reissued"]);
  assert.deepEqual(actions(await q("target_type=transfer")), ["finance.refund"]);
  assert.deepEqual(actions(await q("staff=fin")), [
    "finance.adjustment_approved",
    "finance.refund",
  ]);
  assert.deepEqual(actions(await q("from=2026-06-02&to=2026-06-03")), [
    "finance.refund",
    "card.reissued",
  ]);
  // Backwards dates are read the right way round; a bad date is no filter.
  assert.deepEqual(actions(await q("from=2026-06-03&to=2026-06-02&action=card.")), [
    "card.reissued",
  ]);
  assert.ok(actions(await q("from=yesterday")).length >= 4);
  const none = await q("action=card.&target_id=999");
  assert.match(none, /没有符合筛选条件的记录/);
  assert.match(none, /共 <strong>0<\/strong> 条/);
  assert.match(none, /href="\/admin\/audit">清除筛选/);
});

Deno.test("a record's before → after shows each field with its Chinese name, the changed ones marked", async () => {
  await using w = await setupApp();
  const boss = await seedAudit(w);
  const html = await boss.client.page("/admin/audit?action=card.loss_reported");
  assert.match(
    html,
    /<tr class="diff__changed">\s*<th scope="row">状态<\/th>\s*<td><del>normal<\/del><\/td>\s*<td aria-hidden="true">→<\/td>\s*<td><ins>loss_reported<\/ins>/,
  );
  assert.match(
    html,
    /<tr>\s*<th scope="row">姓名<\/th>\s*<td>张三<\/td>\s*<td aria-hidden="true">→<\/td>\s*<td>张三<\/td>/,
  );
  assert.doesNotMatch(html, /\{&quot;status/, "no raw JSON");
  assert.deepEqual(auditDiff(null, { amount: 300 }), [
    { field: "amount", before: "", after: "300", changed: true },
  ]);
  assert.deepEqual(auditDiff(null, null), []);
  assert.deepEqual(auditDiff("a", "b"), [{ field: "", before: "a", after: "b", changed: true }]);
});

Deno.test("审计日志 exports what the filter shows, as CSV and as Excel", async () => {
  await using w = await setupApp();
  const boss = await seedAudit(w);
  const csv = await boss.client.get("/admin/audit?action=card.&export=csv");
  assert.equal(csv.status, 200);
  const rows = parseCsv(await csv.text());
  assert.deepEqual(rows[0].slice(0, 4), ["时间", "员工", "操作", "操作代码"]);
  assert.deepEqual(rows.slice(1).map((r) => r[2]), ["补卡", "挂失"]);
  assert.equal(rows[1][1], "clerk（clerk）");
  const xlsx = await boss.client.get("/admin/audit?staff=fin&export=xlsx");
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.deepEqual(sheet.slice(1).map((r) => r.cells[3]), [
    "finance.adjustment_approved",
    "finance.refund",
  ]);
});

Deno.test("every audited action and object kind written in modules/ has a Chinese label", async () => {
  const root = new URL("../", import.meta.url);
  const seen = { actions: new Set<string>(), targets: new Set<string>() };
  async function walk(dir: URL) {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(new URL(`${e.name}/`, dir));
      else if (
        e.name.endsWith(".ts") && !e.name.endsWith("_test.ts") && !e.name.startsWith("_test")
      ) {
        const text = await Deno.readTextFile(new URL(e.name, dir));
        for (const line of text.split("\n")) {
          if (/\baction\b/.test(line)) {
            for (const m of line.matchAll(/"([a-z]+\.[a-z_]+)"/g)) {
              if (
                m[1].split(".")[0] in
                  {
                    card: 1,
                    account: 1,
                    closeout: 1,
                    wallet: 1,
                    finance: 1,
                    settlement: 1,
                    topup: 1,
                    billing: 1,
                    merchant: 1,
                    terminal: 1,
                    staff: 1,
                    notify: 1,
                  }
              ) {
                seen.actions.add(m[1]);
              }
            }
          }
          for (const m of line.matchAll(/targetType: "([a-z_]+)"/g)) seen.targets.add(m[1]);
        }
      }
    }
  }
  await walk(root);
  assert.ok(seen.actions.size > 30 && seen.targets.size > 10, "the scan found the audit calls");
  const missing = [...seen.actions].filter((a) => !(a in AUDIT_ACTIONS));
  assert.deepEqual(missing, []);
  assert.deepEqual([...seen.targets].filter((t) => !(t in AUDIT_TARGETS)), []);
});

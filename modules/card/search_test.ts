import assert from "node:assert/strict";
import { sql } from "kysely";
import { parseCsv } from "../platform/csv.ts";
import { readXlsx } from "../platform/sheets.ts";
import { ROLES } from "../staff/mod.ts";
import { cardWorld, idNumberFor, makeStaff } from "../testkit/mod.ts";
import { createCardAccountForTest } from "./mod.ts";

Deno.test("card search pages past its first screen, says how many there are, and exports all of them", async () => {
  await using env = await cardWorld();
  for (let i = 1; i <= 120; i++) {
    await createCardAccountForTest(env.db, env.deps, {
      schoolId: env.school.id,
      studentNumber: `2025${String(i).padStart(6, "0")}`,
      idNumber: idNumberFor(`53010220050101${String(i).padStart(3, "0")}`),
      chipNumber: `77${String(i).padStart(8, "0")}`,
    });
  }
  // The first holder's card is a 临时卡: a 学生 by kind, of another 卡类别.
  await sql`update card_accounts set card_type_id = (select id from card_types where name = '临时卡')
    where student_number = '2025000001'`.execute(env.db);
  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const first = await c.page("/admin/cards?q=2025");
  assert.match(first, /<td>学生<\/td>\s*<td>临时卡<\/td>/);
  assert.match(first, /共 <strong>120<\/strong> 条，第 1–50 条/);
  assert.equal([...first.matchAll(/<tr>\s*<td><a href="\/admin\/cards\/\d+">/g)].length, 50);
  assert.match(first, /href="\/admin\/cards\?q=2025&amp;page=3"/);
  const third = await c.page("/admin/cards?q=2025&page=3");
  assert.match(third, /第 101–120 条/);
  assert.match(third, />2025000120</);
  assert.doesNotMatch(third, />2025000100</);

  const csv = parseCsv(await (await c.get("/admin/cards?q=2025&export=csv")).text());
  assert.equal(csv.length, 121);
  assert.deepEqual(csv[0], ["学号", "姓名", "学校", "类型", "卡类别", "芯片卡号", "状态", "绑定"]);
  assert.deepEqual(csv[1].slice(0, 2), ["2025000001", "测试学生"]);
  // 类型 is the holder's kind; 卡类别 the card's type by its name.
  assert.deepEqual(csv[1].slice(3, 5), ["学生", "临时卡"]);
  assert.deepEqual(csv[2].slice(3, 5), ["学生", "学生"]);
  const xlsx = await c.get("/admin/cards?q=2025&export=xlsx");
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.equal(sheet.length, 121);
  assert.equal(sheet[1].cells[0], "2025000001", "学号 stays text, no lost zeros");
  assert.equal(sheet[120].cells[5], "7700000120");
});

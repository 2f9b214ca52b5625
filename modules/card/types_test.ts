import assert from "node:assert/strict";
import { cardWorld } from "../testkit/mod.ts";
import { createStaff, listAudit, ROLES } from "../staff/mod.ts";
import { DomainError } from "../platform/errors.ts";
import { commitImport, previewImport } from "./import.ts";
import { idCheckChar } from "./rules.ts";
import { cardsOfType, listCardTypes, saveCardType } from "./types.ts";

function idFor(i: number): string {
  const first17 = `530102200501${String(10 + i).padStart(2, "0")}${String(100 + i)}`;
  return first17 + idCheckChar(first17);
}

async function admin(db: Parameters<typeof createStaff>[0]) {
  return await createStaff(db, {
    username: "sysadmin2",
    name: "s",
    password: "Admin12345",
    roles: [ROLES.sysadmin],
  });
}

Deno.test("学生, 教职工 and 临时卡 are seeded; existing cards are 学生", async () => {
  await using env = await cardWorld();
  const types = await listCardTypes(env.db);
  assert.deepEqual(types.map((t) => [t.name, t.kind, t.subsidies]), [
    ["学生", "student", true],
    ["教职工", "staff", true],
    ["临时卡", "student", false],
  ]);
  const students = await cardsOfType(env.db, env.school.id, types[0].id);
  assert.deepEqual(students.map((c) => c.studentNumber), ["2024010001"]);
});

Deno.test("an office's own card type is saved with its price rule, audited; bad ones refused", async () => {
  await using env = await cardWorld();
  const staffId = await admin(env.db);
  const id = await saveCardType(env.db, { staffId }, null, {
    name: "研究生",
    kind: "student",
    payLimit: 30000,
    dailyLimit: 60000,
    subsidies: true,
    prices: { canteen: { percentOff: 5, fenOff: 0 } },
  });
  const saved = (await listCardTypes(env.db)).find((t) => t.id === id)!;
  assert.deepEqual(saved.prices, { canteen: { percentOff: 5, fenOff: 0 } });
  const audit = await listAudit(env.db, { action: "card.type_create" });
  assert.equal(audit.length, 1);
  for (
    const bad of [
      { name: "研究生", field: "name" },
      { name: "x", payLimit: 70000, field: "pay_limit" },
      { name: "y", prices: { canteen: { percentOff: 100, fenOff: 0 } }, field: "canteen_discount" },
      { name: "z", prices: { canteen: { percentOff: 0, fenOff: -1 } }, field: "canteen_discount" },
    ]
  ) {
    await assert.rejects(
      saveCardType(env.db, { staffId }, null, {
        kind: "student",
        payLimit: 100,
        dailyLimit: 60000,
        subsidies: true,
        prices: {},
        ...bad,
      }),
      (err) => err instanceof DomainError && err.field === bad.field,
    );
  }
  assert.equal((await listCardTypes(env.db)).length, 4);
});

Deno.test("the import's 类型 column sets the card type by name; an unknown type is a row error", async () => {
  await using env = await cardWorld();
  const staffId = await admin(env.db);
  const csv = [
    "学号,姓名,身份证号,芯片卡号,类型",
    `2025100001,甲,${idFor(1)},8100000001,临时卡`,
    `2025100002,乙,${idFor(2)},8100000002,教职工`,
    `2025100003,丙,${idFor(3)},8100000003,访客`,
  ].join("\n");
  const importId = await previewImport(env.db, env.deps, {
    schoolId: env.school.id,
    staffId,
    fileName: "t.csv",
    bytes: new TextEncoder().encode(csv),
  });
  const summary = await commitImport(env.db, { importId, staffId });
  assert.equal(summary.created, 2);
  assert.equal(summary.skipped, 1);
  const rows = await env.db.selectFrom("card_accounts")
    .innerJoin("card_types", "card_types.id", "card_accounts.card_type_id")
    .select(["student_number", "card_types.name", "card_accounts.kind"])
    .where("student_number", "like", "20251%").orderBy("student_number").execute();
  assert.deepEqual(rows.map((r) => [r.student_number, r.name, r.kind]), [
    ["2025100001", "临时卡", "student"],
    ["2025100002", "教职工", "staff"],
  ]);
});

import assert from "node:assert/strict";
import { createTestDatabase } from "../platform/testing.ts";
import { hashPassword } from "../security/mod.ts";
import { ensureSchool, findAccount, findAccountByPhone, listSchools } from "./mod.ts";

Deno.test("ensureSchool creates a school once and returns the same one after", async () => {
  const h = await createTestDatabase();
  try {
    const a = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
    const b = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
    assert.equal(a.id, b.id);
    assert.deepEqual((await listSchools(h.db)).map((s) => s.name), ["云南城市建设职业学院"]);
  } finally {
    await h.close();
  }
});

Deno.test("findAccount and findAccountByPhone return the account with its school", async () => {
  const h = await createTestDatabase();
  try {
    const school = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
    const { id } = await h.db.insertInto("accounts").values({
      phone: "13800000009",
      school_id: school.id,
      password_hash: await hashPassword("Abc12345"),
    }).returning("id").executeTakeFirstOrThrow();
    const expected = {
      id,
      phone: "13800000009",
      schoolId: school.id,
      schoolName: "云南城市建设职业学院",
      email: null,
      mustChangePassword: false,
    };
    assert.deepEqual(await findAccount(h.db, id), expected);
    assert.deepEqual(await findAccountByPhone(h.db, "13800000009"), expected);
    assert.equal(await findAccount(h.db, id + 1), null);
    assert.equal(await findAccountByPhone(h.db, "13800000008"), null);
  } finally {
    await h.close();
  }
});

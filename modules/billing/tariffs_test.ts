import assert from "node:assert/strict";
import { createTestDatabase } from "../platform/testing.ts";
import { currentShowerTariff, currentTariff } from "./mod.ts";
import { setTariff } from "./tariffs.ts";

Deno.test("the shower tariff in force is the newest version, with its id", async () => {
  await using h = await createTestDatabase();
  const initial = await currentShowerTariff(h.db);
  assert.equal(initial.unit, "liter");
  assert.ok(initial.fenPerUnit > 0 && initial.preauthAmount > 0);
  const next = await setTariff(h.db, {
    kind: "shower",
    unit: "second",
    fenPerUnit: 1,
    preauthAmount: 300,
    staffId: null,
  });
  assert.deepEqual(await currentShowerTariff(h.db), {
    tariffId: next.id,
    unit: "second",
    fenPerUnit: 1,
    preauthAmount: 300,
  });
  assert.equal((await currentTariff(h.db, "electricity")).unit, "kwh");
});

Deno.test("a tariff refuses a unit of another kind, a zero price and a preauth below one unit", async () => {
  await using h = await createTestDatabase();
  const bad = [
    { kind: "electricity", unit: "ton", fenPerUnit: 50 },
    { kind: "water", unit: "ton", fenPerUnit: 0 },
    { kind: "water", unit: "ton", fenPerUnit: 1.5 },
    { kind: "water", unit: "ton", fenPerUnit: 1e9 },
    { kind: "shower", unit: "liter", fenPerUnit: 10, preauthAmount: 5 },
    { kind: "shower", unit: "liter", fenPerUnit: 10, preauthAmount: null },
    { kind: "gas", unit: "ton", fenPerUnit: 10 },
  ] as const;
  for (const b of bad) {
    // deno-lint-ignore no-explicit-any
    await assert.rejects(setTariff(h.db, { ...(b as any), staffId: null }), /tariff|preauth/i);
  }
  const versions = await h.db.selectFrom("billing_tariffs").select("id").execute();
  assert.equal(versions.length, 3);
});

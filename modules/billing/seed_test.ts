import assert from "node:assert/strict";
import { createTestDatabase } from "../platform/testing.ts";
import { seedDemoBilling } from "./mod.ts";
import { listBuildings, listRooms } from "./rooms.ts";

Deno.test("demo billing data seeds three buildings of rooms once", async () => {
  await using h = await createTestDatabase();
  assert.equal(await seedDemoBilling(h.db), true);
  assert.equal(await seedDemoBilling(h.db), false);
  const buildings = await listBuildings(h.db);
  assert.deepEqual(buildings.map((b) => `${b.code} ${b.name}`), [
    "B01 1号楼",
    "B02 2号楼",
    "B03 3号楼",
  ]);
  const rooms = await listRooms(h.db, buildings[0].id);
  assert.equal(rooms.length, 24);
  assert.equal(rooms[0].number, "101");
  assert.equal(rooms.at(-1)?.number, "308");
});

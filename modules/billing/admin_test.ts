import assert from "node:assert/strict";
import { parseCsv } from "../platform/csv.ts";
import { readXlsx } from "../platform/sheets.ts";
import { getBalance } from "../wallet/mod.ts";
import { listAudit, type Role, ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { assertLedgerBalanced, makeRooms } from "./_testing.ts";
import { runDueJobs } from "./delivery.ts";
import { SimulatedMeter } from "./meters.ts";
import { findPurchase, purchaseUtility } from "./purchases.ts";
import { chooseRoom, findResidence } from "./rooms.ts";
import { currentTariff } from "./tariffs.ts";
import { walletMoney } from "./wallet_link.ts";

const { cardOffice, infoCentre, finance, sysadmin } = ROLES;

/** Every admin route of billing and the roles that may use it (README documents the same). */
const ROUTES: Array<
  { method: "GET" | "POST"; path: string; roles: Role[]; form?: Record<string, string> }
> = [
  { method: "GET", path: "/admin/billing/buildings", roles: [cardOffice, sysadmin] },
  {
    method: "POST",
    path: "/admin/billing/buildings",
    roles: [cardOffice, sysadmin],
    form: { code: "", name: "" },
  },
  {
    method: "POST",
    path: "/admin/billing/buildings/import",
    roles: [cardOffice, sysadmin],
    form: { csv: "" },
  },
  { method: "GET", path: "/admin/billing/buildings/:b", roles: [cardOffice, sysadmin] },
  {
    method: "POST",
    path: "/admin/billing/buildings/:b",
    roles: [cardOffice, sysadmin],
    form: { name: "" },
  },
  {
    method: "POST",
    path: "/admin/billing/buildings/:b/rooms",
    roles: [cardOffice, sysadmin],
    form: { number: "" },
  },
  {
    method: "POST",
    path: "/admin/billing/rooms/:r",
    roles: [cardOffice, sysadmin],
    form: { capacity: "x" },
  },
  { method: "GET", path: "/admin/billing/residents", roles: [cardOffice] },
  {
    method: "POST",
    path: "/admin/billing/residents/move",
    roles: [cardOffice],
    form: { phone: "1" },
  },
  {
    method: "POST",
    path: "/admin/billing/residents/remove",
    roles: [cardOffice],
    form: { phone: "1" },
  },
  { method: "GET", path: "/admin/billing/tariffs", roles: [sysadmin, finance] },
  {
    method: "POST",
    path: "/admin/billing/tariffs",
    roles: [sysadmin],
    form: { kind: "water", unit: "ton", price: "x" },
  },
  { method: "GET", path: "/admin/billing/balances", roles: [cardOffice, finance, sysadmin] },
  { method: "GET", path: "/admin/billing/rooms/:r", roles: [cardOffice, finance, sysadmin] },
  { method: "GET", path: "/admin/billing/queue", roles: [finance, sysadmin] },
  { method: "POST", path: "/admin/billing/queue/999999/retry", roles: [finance, sysadmin] },
  { method: "POST", path: "/admin/billing/queue/999999/refund", roles: [finance] },
  { method: "GET", path: "/admin/billing/reports", roles: [finance] },
  { method: "GET", path: "/admin/billing/reports.csv", roles: [finance] },
  { method: "GET", path: "/admin/billing/simulator", roles: [sysadmin] },
  {
    method: "POST",
    path: "/admin/billing/simulator",
    roles: [sysadmin],
    form: { scope: "nowhere" },
  },
];

Deno.test("every billing admin route lets in exactly its roles and sends visitors to sign in", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const fill = (p: string) =>
    p.replace(":b", String(r101.buildingId)).replace(":r", String(r101.id));
  const anon = w.client("10.9.9.9");
  for (const r of ROUTES) {
    const res = r.method === "GET"
      ? await anon.get(fill(r.path))
      : await anon.post(fill(r.path), r.form ?? {});
    assert.equal(res.status, 303, `${r.method} ${r.path} signed out`);
    assert.match(res.headers.get("location")!, /^\/admin\/login/);
  }
  for (const role of [cardOffice, infoCentre, finance, sysadmin]) {
    const { client: c } = await makeStaff(w, `u_${role}`, [role]);
    for (const r of ROUTES) {
      const path = fill(r.path);
      const res = r.method === "GET" ? await c.get(path) : await c.post(path, r.form ?? {});
      const body = await res.text();
      if (r.roles.includes(role)) {
        assert.notEqual(res.status, 403, `${role} may ${r.method} ${r.path}`);
        assert.ok(res.status < 500, `${role} ${r.method} ${r.path} answered ${res.status}`);
      } else {
        assert.equal(res.status, 403, `${role} may not ${r.method} ${r.path}`);
        assert.match(body, /您没有权限/);
      }
    }
  }
  // Nothing was changed by the refused or invalid requests.
  assert.equal((await listAudit(w.db, { action: "billing." })).length, 0);
});

Deno.test("the card office imports rooms from CSV, reports bad lines, and every change is audited", async () => {
  await using w = await setupApp();
  const { client: c } = await makeStaff(w, "clerk", [cardOffice]);
  const csv = [
    "楼栋编码,楼栋名称,房间号,床位数",
    "B01,1号楼,101,4",
    "B01,1号楼,102",
    "b02,2号楼,201,6",
    "B01,1号楼,101,4",
    "B03,<script>x</script>,301",
    "B04,4号楼,0.5.5",
    "B04,4号楼,401,0",
    "B04,4号楼,402,abc",
    "only,two",
  ].join("\n");
  const res = await c.post("/admin/billing/buildings/import", { csv });
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.match(html, /新建楼栋 2 栋，新建房间 3 间，已存在 1 间，有 5 行未导入/);
  assert.match(html, /第 6 行/);
  assert.doesNotMatch(html, /<script>x/);
  const list = await c.page("/admin/billing/buildings");
  assert.match(list, /B02/);
  assert.match(list, /2号楼/);
  const audit = await listAudit(w.db, { action: "billing.rooms_imported" });
  assert.equal(audit.length, 1);
  assert.equal((audit[0].after as { roomsCreated: number }).roomsCreated, 3);

  const empty = await c.post("/admin/billing/buildings/import", { csv: "  " });
  assert.equal(empty.status, 422);

  // Building and room forms refuse bad input and keep what was typed.
  for (
    const [code, name] of [["", "x"], ["B 9", "x"], ["B09", ""], ["B09", "<b>"], ["B01", "重复"]]
  ) {
    const r = await c.post("/admin/billing/buildings", { code, name });
    assert.equal(r.status, 422, `building ${code}/${name}`);
    assert.doesNotMatch(await r.text(), /<b>/);
  }
  const b = await w.db.selectFrom("billing_buildings").select("id").where("code", "=", "B01")
    .executeTakeFirstOrThrow();
  for (
    const [number, capacity] of [
      ["", "4"],
      ["<i>", "4"],
      ["101", "4"],
      ["103", "0"],
      ["103", "-1"],
      ["103", "abc"],
      ["103", "21"],
      ["103", "2.5"],
    ]
  ) {
    const r = await c.post(`/admin/billing/buildings/${b.id}/rooms`, { number, capacity });
    assert.equal(r.status, 422, `room ${number}/${capacity}`);
  }
  assert.equal(
    (await c.post(`/admin/billing/buildings/${b.id}/rooms`, { number: "103", capacity: "2" }))
      .status,
    303,
  );
  assert.equal(
    (await c.post(`/admin/billing/buildings/${b.id}`, { name: "一号楼" })).status,
    303,
  );
  assert.equal((await c.get("/admin/billing/buildings/999999")).status, 404);
  assert.equal((await c.get("/admin/billing/buildings/abc")).status, 404);
  const actions = (await listAudit(w.db, { action: "billing." })).map((a) => a.action).sort();
  assert.deepEqual(actions, [
    "billing.building_renamed",
    "billing.room_created",
    "billing.rooms_imported",
  ]);
});

Deno.test("the card office moves and removes a resident; the student sees the new room", async () => {
  await using w = await setupApp();
  const { r101, r102 } = await makeRooms(w.db);
  const s = await makeStudent(w, { balance: 10_00, name: "王芳" });
  await chooseRoom(w.db, s.accountId, r101.id);
  const { client: c } = await makeStaff(w, "clerk", [cardOffice]);
  const found = await c.page(`/admin/billing/residents?phone=${s.phone}`);
  assert.match(found, /王芳/);
  assert.match(found, /1号楼 101/);
  const bad = await c.post("/admin/billing/residents/move", {
    phone: s.phone,
    building: "B01",
    room: "999",
  });
  assert.equal(bad.status, 422);
  const same = await c.post("/admin/billing/residents/move", {
    phone: s.phone,
    building: "B01",
    room: "101",
  });
  assert.equal(same.status, 422);
  const moved = await c.post("/admin/billing/residents/move", {
    phone: s.phone,
    building: "b01",
    room: "102",
  });
  assert.equal(moved.status, 303);
  assert.equal((await findResidence(w.db, s.accountId))?.id, r102.id);
  assert.match(await s.client.page("/billing/electricity"), /1号楼 102/);
  const audit = await listAudit(w.db, { action: "billing.resident_moved" });
  assert.deepEqual(audit[0].before, { roomId: r101.id, room: "1号楼 101" });
  assert.deepEqual(audit[0].after, { roomId: r102.id, room: "1号楼 102" });
  assert.equal((await c.post("/admin/billing/residents/remove", { phone: s.phone })).status, 303);
  assert.equal(await findResidence(w.db, s.accountId), null);
  assert.equal((await c.post("/admin/billing/residents/remove", { phone: s.phone })).status, 422);
  assert.equal((await c.get("/admin/billing/residents?phone=abc")).status, 200);
});

Deno.test("a new tariff applies to the next purchase, which records the version in force", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const { client: c } = await makeStaff(w, "root", [sysadmin]);
  for (
    const form of <Array<Record<string, string>>> [
      { kind: "electricity", unit: "ton", price: "0.6" },
      { kind: "electricity", unit: "kwh", price: "0" },
      { kind: "electricity", unit: "kwh", price: "-1" },
      { kind: "electricity", unit: "kwh", price: "0.001" },
      { kind: "electricity", unit: "kwh", price: "1e9" },
      { kind: "electricity", unit: "kwh", price: "<b>" },
      { kind: "gas", unit: "kwh", price: "1" },
      { kind: "shower", unit: "liter", price: "0.05", preauth: "" },
      { kind: "shower", unit: "liter", price: "0.05", preauth: "0.01" },
    ]
  ) {
    const r = await c.post("/admin/billing/tariffs", form);
    assert.equal(r.status, 422, JSON.stringify(form));
  }
  const ok = await c.post("/admin/billing/tariffs", {
    kind: "electricity",
    unit: "kwh",
    price: "0.60",
  });
  assert.equal(ok.status, 303);
  const t = await currentTariff(w.db, "electricity");
  assert.equal(t.fenPerUnit, 60);
  assert.match(await c.page("/admin/billing/tariffs"), /¥0\.60\/度/);
  const audit = await listAudit(w.db, { action: "billing.tariff_set" });
  assert.equal(audit.length, 1);
  assert.equal((audit[0].before as { fenPerUnit: number }).fenPerUnit, 55);

  const s = await makeStudent(w, { balance: 10_00 });
  await chooseRoom(w.db, s.accountId, r101.id);
  const p = await purchaseUtility(w.db, walletMoney, {
    payer: { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "x" },
    utility: "electricity",
    amount: 6_00,
    token: "tariff-token-aaaaaaaaa",
  });
  assert.equal(p.tariffId, t.id);
  assert.equal(p.milliUnits, 10_000);
  const { client: finance_ } = await makeStaff(w, "money", [finance]);
  const view = await finance_.page("/admin/billing/tariffs");
  assert.match(view, /¥0\.60/);
  assert.doesNotMatch(view, /调整费率/, "finance sees tariffs but cannot edit them");
});

Deno.test("finance sees failed deliveries in the queue, retries and refunds them; reports count it all", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const s = await makeStudent(w, { balance: 100_00, name: "张三" });
  await chooseRoom(w.db, s.accountId, r101.id);
  const { client: root } = await makeStaff(w, "root", [sysadmin]);
  assert.equal(
    (await root.post("/admin/billing/simulator", {
      scope: "room",
      on: "1",
      building: "B01",
      room: "999",
    })).status,
    422,
  );
  assert.equal(
    (await root.post("/admin/billing/simulator", {
      scope: "room",
      on: "1",
      building: "B01",
      room: "101",
    })).status,
    303,
  );
  assert.match(await root.page("/admin/billing/simulator"), /1号楼 101 故障中/);
  const pay = (amount: number, token: string) =>
    purchaseUtility(w.db, walletMoney, {
      payer: { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "张三" },
      utility: "electricity",
      amount,
      token,
    });
  const a = await pay(10_00, "queue-token-aaaaaaaaa1");
  const b = await pay(20_00, "queue-token-aaaaaaaaa2");
  const meter = new SimulatedMeter(w.db);
  await runDueJobs({ db: w.db, meter, money: walletMoney });
  const { client: f } = await makeStaff(w, "money", [finance]);
  const queue = await f.page("/admin/billing/queue");
  assert.match(queue, new RegExp(a.orderNo));
  assert.match(queue, /Simulated meter fault/);
  assert.match(queue, /待充值/);

  // Refund one now; retry the other after the meter is fixed.
  assert.equal((await f.post(`/admin/billing/queue/${a.id}/refund`)).status, 303);
  await runDueJobs({ db: w.db, meter, money: walletMoney });
  assert.equal((await findPurchase(w.db, a.id))?.status, "refunded");
  assert.equal(
    (await f.post(`/admin/billing/queue/${a.id}/refund`)).status,
    409,
    "refunded once only",
  );
  assert.equal(
    (await root.post("/admin/billing/simulator", {
      scope: "room",
      on: "0",
      building: "B01",
      room: "101",
    })).status,
    303,
  );
  assert.equal((await f.post(`/admin/billing/queue/${b.id}/retry`)).status, 303);
  await runDueJobs({ db: w.db, meter, money: walletMoney });
  assert.equal((await findPurchase(w.db, b.id))?.status, "delivered");
  assert.equal((await f.post(`/admin/billing/queue/${b.id}/retry`)).status, 409);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 80_00);
  const actions = (await listAudit(w.db, { action: "billing." })).map((x) => x.action).sort();
  assert.deepEqual(actions, [
    "billing.delivery_retried",
    "billing.refund_requested",
    "billing.sim_fault_off",
    "billing.sim_fault_on",
  ]);

  const report = await f.page("/admin/billing/reports");
  assert.match(report, /¥30\.00/);
  assert.match(report, /¥10\.00/);
  assert.match(report, /¥20\.00/);
  const csv = await f.get("/admin/billing/reports.csv");
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get("content-type")!, /text\/csv/);
  const text = await csv.text();
  assert.match(text, /日期,类别,笔数,收入\(元\),退款笔数,退款\(元\),净收入\(元\)/);
  assert.match(text, /\d{4}-\d{2}-\d{2},电费,2,30\.00,1,10\.00,20\.00/);
  assert.equal((await f.get("/admin/billing/reports?from=<x>&to=2026-13-99")).status, 200);

  const xlsx = await f.get("/admin/billing/reports.xlsx");
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.deepEqual(sheet[0].cells, [
    "日期",
    "类别",
    "笔数",
    "收入(元)",
    "退款笔数",
    "退款(元)",
    "净收入(元)",
  ]);
  assert.deepEqual(sheet[1].cells.slice(1), ["电费", "2", "30", "1", "10", "20"]);

  const balances = await root.page("/admin/billing/balances");
  assert.match(balances, /¥20\.00/);
  assert.match(balances, /href="\/admin\/billing\/balances\?building=\d+&amp;export=csv"/);
  const roomsCsv = parseCsv(
    await (await root.get(`/admin/billing/balances?building=${r101.buildingId}&export=csv`)).text(),
  );
  assert.deepEqual(roomsCsv[0].slice(0, 5), ["房间", "启用", "住户", "床位", "剩余电费(元)"]);
  assert.ok(roomsCsv.some((r) => r[0] === r101.number && r[4] === "20.00"));
  const room = await root.page(`/admin/billing/rooms/${r101.id}`);
  assert.match(room, /张三/);
  assert.match(room, new RegExp(`${a.orderNo}[\\s\\S]*已退款`));
  assert.match(room, new RegExp(`${b.orderNo}[\\s\\S]*已到账`));
  assert.equal((await root.get("/admin/billing/rooms/999999")).status, 404);
  await assertLedgerBalanced(w.db);
});

Deno.test("overlong input in every billing form, staff and student, comes back as the form with a Chinese message", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const { client: staff } = await makeStaff(w, "long_input", [cardOffice, sysadmin]);
  const long = "八".repeat(300);
  const forms: Array<[string, Record<string, string>]> = [
    ["/admin/billing/buildings", { code: long, name: "x" }],
    [`/admin/billing/buildings/${r101.buildingId}`, { name: long }],
    [`/admin/billing/buildings/${r101.buildingId}/rooms`, { number: long, capacity: "4" }],
    [`/admin/billing/rooms/${r101.id}`, { capacity: long, active: "1" }],
    ["/admin/billing/residents/move", { phone: long, building: "B01", room: "101" }],
    ["/admin/billing/residents/remove", { phone: long }],
    ["/admin/billing/tariffs", { kind: long, unit: "kwh", price: "1", preauth: "" }],
    ["/admin/billing/simulator", { scope: long, on: "1", building: "", room: "" }],
  ];
  for (const [path, form] of forms) {
    const res = await staff.post(path, form);
    assert.equal(res.status, 422, path);
    const html = await res.text();
    assert.match(html, /不能超过\d+个字符/, path);
    assert.match(html, /<html/, path);
  }
  const student = await makeStudent(w, { balance: 10_000 });
  const answers: Array<[string, Record<string, string>, RegExp]> = [
    ["/billing/room", { building: long, room: long }, /请选择房间/],
    ["/billing/electricity", { amount: long, quick: "", token: "x" }, /请输入正确的金额/],
  ];
  for (const [path, form, message] of answers) {
    if (path === "/billing/electricity") await chooseRoom(w.db, student.accountId, r101.id);
    const res = await student.client.post(path, form);
    assert.equal(res.status, 422, path);
    assert.match(await res.text(), message, path);
  }
  assert.equal((await listAudit(w.db, { action: "billing." })).length, 0);
});

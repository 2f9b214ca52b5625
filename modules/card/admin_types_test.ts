/**
 * 卡类别 and 餐次 pages: the system administrator edits (audited), finance looks, others are
 * refused; bad input comes back with its reason and changes nothing; a price edited on the page
 * leaves the price recorded on an earlier payment alone; the card office moves a card to another
 * type on its page.
 */
import assert from "node:assert/strict";
import { cardWorld, makeStaff } from "../testkit/mod.ts";
import { listAudit, ROLES } from "../staff/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { creditTopUp, payFromCard } from "../wallet/mod.ts";
import { listCardTypes, listMealPeriods, saveMealPeriod } from "./mod.ts";
import { CardError } from "./errors.ts";

type World = Awaited<ReturnType<typeof cardWorld>>;

const TYPE_FORM = {
  name: "研究生",
  kind: "student",
  pay_limit: "300",
  daily_limit: "600.50",
  subsidies: "1",
  canteen_percent: "5",
  canteen_fen: "",
  supermarket_percent: "",
  supermarket_fen: "0.30",
  other_percent: "",
  other_fen: "",
};

async function typeIdOf(w: World, name: string): Promise<number> {
  return (await listCardTypes(w.db)).find((t) => t.name === name)!.id;
}

Deno.test("卡类别: the system administrator adds and edits types, audited; bad input is refused with its reason and changes nothing", async () => {
  await using w = await cardWorld();
  const { client: admin } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const list = await admin.page("/admin/card-types");
  for (const name of ["学生", "教职工", "临时卡"]) assert.match(list, new RegExp(`>${name}</a>`));
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ canteen_percent: "150" }, /折扣比例为0-99之间的整数（%）/],
    [{ supermarket_fen: "-1" }, /立减金额需为不小于0的金额（元）/],
    [{ pay_limit: "-5" }, /单笔限额需为大于0的金额/],
    [{ pay_limit: "700" }, /单笔限额不能超过每日限额/],
    [{ daily_limit: "abc" }, /每日限额需为大于0的金额/],
    [{ name: "" }, /名称为1-20个文字、字母或数字/],
    [{ name: "学生" }, /已有同名的卡类别/],
    [{ kind: "visitor" }, /请选择持卡人身份/],
  ];
  for (const [change, message] of bad) {
    const res = await admin.post("/admin/card-types/new", { ...TYPE_FORM, ...change });
    assert.equal(res.status, 422, JSON.stringify(change));
    const html = await res.text();
    assert.match(html, message);
    // What was typed comes back.
    assert.match(html, new RegExp(`value="${change.name ?? TYPE_FORM.name}"`));
  }
  assert.equal((await listCardTypes(w.db)).length, 3);
  assert.equal((await listAudit(w.db, { targetType: "card_type" })).length, 0);

  const res = await admin.post("/admin/card-types/new", TYPE_FORM);
  assert.equal(res.status, 303);
  assert.match(res.headers.get("location")!, /^\/admin\/card-types\/\d+\?done=saved$/);
  const saved = (await listCardTypes(w.db)).find((t) => t.name === "研究生")!;
  assert.deepEqual(saved, {
    id: saved.id,
    name: "研究生",
    kind: "student",
    payLimit: 30000,
    dailyLimit: 60050,
    subsidies: true,
    prices: {
      canteen: { percentOff: 5, fenOff: 0 },
      supermarket: { percentOff: 0, fenOff: 30 },
    },
  });
  const page = await admin.page(res.headers.get("location")!);
  assert.match(page, /已保存/);
  assert.match(page, /name="canteen_percent" inputmode="numeric" maxlength="3" value="5"/);

  // The seeded 教职工 is editable: a staff-canteen discount.
  const staffType = await typeIdOf(w, "教职工");
  const edit = await admin.post(`/admin/card-types/${staffType}`, {
    ...TYPE_FORM,
    name: "教职工",
    kind: "staff",
    pay_limit: "200",
    daily_limit: "500",
    canteen_percent: "10",
    supermarket_fen: "",
  });
  assert.equal(edit.status, 303);
  const staff = (await listCardTypes(w.db)).find((t) => t.id === staffType)!;
  assert.deepEqual(staff.prices, { canteen: { percentOff: 10, fenOff: 0 } });
  const audit = await listAudit(w.db, { targetType: "card_type" });
  assert.deepEqual(audit.map((a) => [a.action, a.username]).sort(), [
    ["card.type_create", "sys"],
    ["card.type_update", "sys"],
  ]);
  const bad2 = await admin.post(`/admin/card-types/${staffType}`, {
    ...TYPE_FORM,
    name: "教职工",
    canteen_percent: "100",
  });
  assert.equal(bad2.status, 422);
  assert.deepEqual((await listCardTypes(w.db)).find((t) => t.id === staffType), staff);
});

Deno.test("卡类别: a type that cards use cannot be deleted; an unused one can, audited", async () => {
  await using w = await cardWorld();
  const { client: admin } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const student = await typeIdOf(w, "学生");
  const used = await admin.post(`/admin/card-types/${student}/delete`, { confirm: "1" });
  assert.equal(used.status, 422);
  assert.match(await used.text(), /仍有一卡通账户属于“学生”，不能删除/);
  const temp = await typeIdOf(w, "临时卡");
  const unconfirmed = await admin.post(`/admin/card-types/${temp}/delete`, {});
  assert.equal(unconfirmed.status, 422);
  assert.equal((await listCardTypes(w.db)).length, 3);
  const gone = await admin.post(`/admin/card-types/${temp}/delete`, { confirm: "1" });
  assert.equal(gone.status, 303);
  assert.deepEqual((await listCardTypes(w.db)).map((t) => t.name), ["学生", "教职工"]);
  const [entry] = await listAudit(w.db, { action: "card.type_delete" });
  assert.equal(entry.target_id, String(temp));
  assert.equal((await admin.get(`/admin/card-types/${temp}`)).status, 404);
});

Deno.test("卡类别 and 餐次: finance may look but not change; other departments are refused", async () => {
  await using w = await cardWorld();
  const canteen = await createMerchant(w.db, { code: "C-1", name: "一食堂", category: "canteen" });
  const student = await typeIdOf(w, "学生");
  const { client: fin } = await makeStaff(w, "fin", [ROLES.finance]);
  const { client: clerk } = await makeStaff(w, "clerk", [ROLES.cardOffice]);
  const list = await fin.page("/admin/card-types");
  assert.doesNotMatch(list, /新建卡类别/);
  assert.match(
    await fin.page(`/admin/card-types/${student}`),
    /<fieldset class="choices" disabled>/,
  );
  assert.match(
    await fin.page("/admin/meal-periods"),
    new RegExp(`/admin/meal-periods/${canteen.id}`),
  );
  assert.doesNotMatch(await fin.page(`/admin/meal-periods/${canteen.id}`), /添加餐次/);
  const posts: Array<[string, Record<string, string>]> = [
    ["/admin/card-types/new", TYPE_FORM],
    [`/admin/card-types/${student}`, { ...TYPE_FORM, name: "学生" }],
    [`/admin/card-types/${student}/delete`, { confirm: "1" }],
    [`/admin/meal-periods/${canteen.id}`, { name: "午餐", starts: "11:00", ends: "13:00" }],
    [`/admin/meal-periods/${canteen.id}/delete`, { period_id: "1" }],
  ];
  for (const [path, form] of posts) {
    assert.equal((await fin.post(path, form)).status, 403, path);
    assert.equal((await clerk.post(path, form)).status, 403, path);
  }
  assert.equal((await fin.get("/admin/card-types/new")).status, 403);
  for (const path of ["/admin/card-types", "/admin/meal-periods", `/admin/card-types/${student}`]) {
    assert.equal((await clerk.get(path)).status, 403, path);
  }
  assert.equal((await listCardTypes(w.db)).length, 3);
  assert.equal((await listAudit(w.db, {})).length, 0);
});

Deno.test("餐次: a canteen's periods are added, edited and removed, audited; overlaps, ends before starts, bad times and bounds are refused", async () => {
  await using w = await cardWorld();
  const canteen = await createMerchant(w.db, { code: "C-1", name: "一食堂", category: "canteen" });
  const shop = await createMerchant(w.db, { code: "S-1", name: "超市", category: "supermarket" });
  const { client: admin } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const staffType = await typeIdOf(w, "教职工");
  assert.match(
    await admin.page(`/admin/merchants/${canteen.id}`),
    new RegExp(`href="/admin/meal-periods/${canteen.id}"`),
  );
  assert.equal((await admin.get(`/admin/meal-periods/${shop.id}`)).status, 404);
  const path = `/admin/meal-periods/${canteen.id}`;
  const lunch = {
    period_id: "",
    name: "午餐",
    starts: "11:00",
    ends: "13:00",
    max_count: "2",
    max_amount: "",
    [`type_${staffType}_percent`]: "20",
    [`type_${staffType}_fen`]: "",
  };
  assert.equal((await admin.post(path, lunch)).status, 303);
  const [saved] = await listMealPeriods(w.db, canteen.id);
  assert.deepEqual(saved, {
    id: saved.id,
    merchantId: canteen.id,
    name: "午餐",
    starts: "11:00",
    ends: "13:00",
    maxCount: 2,
    maxAmount: null,
    prices: { [staffType]: { percentOff: 20, fenOff: 0 } },
  });
  const bad: Array<[Record<string, string>, RegExp]> = [
    [{ name: "加餐", starts: "12:30", ends: "14:00" }, /与午餐（11:00–13:00）时间重叠/],
    [{ name: "午餐", starts: "17:00", ends: "19:00" }, /该商户已有同名的餐次/],
    [{ name: "晚餐", starts: "19:00", ends: "17:00" }, /结束时间需晚于开始时间/],
    [{ name: "晚餐", starts: "25:00", ends: "19:00" }, /开始时间格式为 时:分/],
    [{ name: "晚餐", starts: "17:00", ends: "7pm" }, /结束时间格式为 时:分/],
    [{ name: "晚餐", starts: "17:00", ends: "19:00", max_count: "0" }, /笔数上限需为大于0的整数/],
    [{ name: "晚餐", starts: "17:00", ends: "19:00", max_amount: "-3" }, /金额上限需为大于0的金额/],
    [
      { name: "晚餐", starts: "17:00", ends: "19:00", [`type_${staffType}_percent`]: "101" },
      /折扣比例为0-99之间的整数（%）/,
    ],
    [
      { name: "晚餐", starts: "17:00", ends: "19:00", [`type_${staffType}_fen`]: "-1" },
      /立减金额需为不小于0的金额（元）/,
    ],
    [{ name: "晚餐", starts: "17:00", ends: "19:00", type_999999_percent: "5" }, /卡类别不存在/],
  ];
  for (const [change, message] of bad) {
    const res = await admin.post(path, { ...lunch, max_count: "", ...change });
    assert.equal(res.status, 422, JSON.stringify(change));
    assert.match(await res.text(), message, JSON.stringify(change));
  }
  // Its own times do not overlap itself: the period moves and its cap changes.
  const moved = await admin.post(path, {
    ...lunch,
    period_id: String(saved.id),
    starts: "10:30",
    ends: "13:30",
    max_count: "",
    max_amount: "30",
  });
  assert.equal(moved.status, 303);
  const [after] = await listMealPeriods(w.db, canteen.id);
  assert.deepEqual([after.starts, after.ends, after.maxCount, after.maxAmount], [
    "10:30",
    "13:30",
    null,
    3000,
  ]);
  assert.equal((await listMealPeriods(w.db, canteen.id)).length, 1);
  assert.equal((await admin.post(`${path}/delete`, { period_id: String(saved.id) })).status, 303);
  assert.deepEqual(await listMealPeriods(w.db, canteen.id), []);
  const audit = await listAudit(w.db, { targetType: "meal_period" });
  assert.deepEqual(audit.map((a) => a.action).sort(), [
    "card.meal_period_create",
    "card.meal_period_delete",
    "card.meal_period_update",
  ]);
});

Deno.test("a canteen price edited on the page now leaves the price recorded on an earlier payment alone", async () => {
  await using w = await cardWorld();
  const canteen = await createMerchant(w.db, { code: "C-1", name: "一食堂", category: "canteen" });
  const { client: admin } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const { client: clerk } = await makeStaff(w, "clerk", [ROLES.cardOffice]);
  const card = w.zhang.cardAccountId;
  await creditTopUp(w.db, {
    cardAccountId: card,
    amount: 100_00,
    method: "sandbox",
    reference: "t",
  });
  const staffType = await typeIdOf(w, "教职工");
  const form = {
    ...TYPE_FORM,
    name: "教职工",
    kind: "staff",
    pay_limit: "200",
    daily_limit: "500",
  };
  await admin.post(`/admin/card-types/${staffType}`, { ...form, canteen_percent: "10" });
  assert.equal(
    (await clerk.post(`/admin/cards/${card}/card-type`, { card_type_id: String(staffType) }))
      .status,
    303,
  );
  const pay = (reference: string) =>
    payFromCard(w.db, { cardAccountId: card, merchantId: canteen.id, amount: 10_00, reference });
  assert.equal((await pay("meal-1")).charged, 9_00);
  const edited = await admin.post(`/admin/card-types/${staffType}`, {
    ...form,
    canteen_percent: "20",
  });
  assert.equal(edited.status, 303);
  assert.equal((await pay("meal-2")).charged, 8_00);
  const rows = await w.db.selectFrom("ledger_transfers").select(["reference", "amount", "details"])
    .where("reference", "in", ["meal-1", "meal-2"]).orderBy("reference").execute();
  assert.deepEqual(
    rows.map((r) => [r.reference, Number(r.amount), (r.details as { price: unknown }).price]),
    [
      ["meal-1", 9_00, {
        list: 10_00,
        off: 1_00,
        type: "教职工",
        period: null,
        percentOff: 10,
        fenOff: 0,
      }],
      ["meal-2", 8_00, {
        list: 10_00,
        off: 2_00,
        type: "教职工",
        period: null,
        percentOff: 20,
        fenOff: 0,
      }],
    ],
  );
});

Deno.test("the card office moves a card to another 卡类别 on its page, audited; a bad choice is refused", async () => {
  await using w = await cardWorld();
  const { client: clerk } = await makeStaff(w, "clerk", [ROLES.cardOffice]);
  const { client: admin } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const card = w.zhang.cardAccountId;
  const temp = await typeIdOf(w, "临时卡");
  const page = await clerk.page(`/admin/cards/${card}`);
  assert.match(page, /<dd id="card-type">学生（学生）<\/dd>/);
  assert.equal(
    (await admin.post(`/admin/cards/${card}/card-type`, { card_type_id: String(temp) })).status,
    403,
  );
  for (const bad of ["", "999999", "abc"]) {
    const res = await clerk.post(`/admin/cards/${card}/card-type`, { card_type_id: bad });
    assert.equal(res.status, 422);
    assert.match(await res.text(), /请选择卡类别/);
  }
  const same = await clerk.post(`/admin/cards/${card}/card-type`, {
    card_type_id: String(await typeIdOf(w, "学生")),
  });
  assert.match(await same.text(), /该卡已是学生/);
  const res = await clerk.post(`/admin/cards/${card}/card-type`, { card_type_id: String(temp) });
  assert.equal(res.status, 303);
  const after = await clerk.page(res.headers.get("location")!);
  assert.match(after, /<dd id="card-type">临时卡（学生）<\/dd>/);
  assert.match(after, /更改卡类别/);
  const [entry] = await listAudit(w.db, { action: "card.type_changed" });
  assert.equal(entry.username, "clerk");
  assert.deepEqual(
    [
      (entry.before as { cardTypeId: number }).cardTypeId,
      (entry.after as { cardTypeId: number }).cardTypeId,
    ],
    [await typeIdOf(w, "学生"), temp],
  );
});

Deno.test("two administrators adding overlapping 餐次 at once: one is saved, the other refused with the overlap", async () => {
  await using w = await cardWorld();
  const canteen = await createMerchant(w.db, { code: "C-1", name: "一食堂", category: "canteen" });
  const { id: staffId } = await makeStaff(w, "sys", [ROLES.sysadmin]);
  const period = (name: string, starts: string, ends: string) =>
    saveMealPeriod(w.db, { staffId }, canteen.id, null, {
      name,
      starts,
      ends,
      maxCount: null,
      maxAmount: null,
      prices: {},
    });
  for (let round = 0; round < 5; round++) {
    const hour = String(6 + round * 3).padStart(2, "0");
    const results = await Promise.allSettled([
      period(`甲${round}`, `${hour}:00`, `${hour}:40`),
      period(`乙${round}`, `${hour}:30`, `${hour}:50`),
    ]);
    const refused = results.filter((r) => r.status === "rejected");
    assert.equal(refused.length, 1, `round ${round}`);
    assert.ok(
      (refused[0] as PromiseRejectedResult).reason instanceof CardError &&
        /时间重叠/.test((refused[0] as PromiseRejectedResult).reason.userMessage),
    );
  }
  const periods = await listMealPeriods(w.db, canteen.id);
  assert.equal(periods.length, 5);
  for (let i = 1; i < periods.length; i++) assert.ok(periods[i - 1].ends <= periods[i].starts);
});

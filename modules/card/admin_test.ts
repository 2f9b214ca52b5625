import assert from "node:assert/strict";
import { cardWorld, IDS, makeAccount, makeStaff } from "../testkit/mod.ts";
import { csrfFor, type TestClient } from "../platform/testing.ts";
import { ALL_ROLES, listAudit, type Role, ROLES } from "../staff/mod.ts";
import { lockedFor, recordEvent } from "../security/mod.ts";
import { loginThrottleKey } from "../account/mod.ts";
import {
  blocklistSince,
  checkCardPassword,
  createCardAccountForTest,
  findBoundCard,
  findCardByChip,
} from "./mod.ts";
import { previewImport } from "./import.ts";

const HEADER = "学号,姓名,身份证号,芯片卡号,类型";

/** Posts a multipart form with a file, like the browser's import form. */
async function upload(
  c: TestClient,
  fields: Record<string, string>,
  file: Uint8Array,
  name = "持卡人.csv",
) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  form.set("_csrf", await csrfFor(c.config, c.cookies, true));
  form.set("file", new File([file as BlobPart], name, { type: "text/csv" }));
  return await c.app.request("http://localhost:8000/admin/cards/import", {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  });
}

Deno.test("every role against every card office route: allowed ones pass, others get 403, strangers the sign-in", async () => {
  await using env = await cardWorld();
  const id = env.zhang.cardAccountId;
  const importId = await previewImport(env.db, env.deps, {
    schoolId: env.school.id,
    staffId: (await env.db.insertInto("staff").values({
      username: "seed",
      name: "s",
      password_hash: "x",
      roles: [],
    })
      .returning("id").executeTakeFirstOrThrow()).id,
    fileName: "a.csv",
    bytes: new TextEncoder().encode(
      `${HEADER}\n2025000001,陈一,530102200501011233,7000000001,学生\n`,
    ),
  });
  const view: Role[] = [ROLES.cardOffice, ROLES.sysadmin, ROLES.infoCentre];
  const importer: Role[] = [ROLES.cardOffice, ROLES.sysadmin];
  const counter: Role[] = [ROLES.cardOffice];
  const loginUnlock: Role[] = [ROLES.cardOffice, ROLES.infoCentre];
  const routes: Array<
    { method: "GET" | "POST"; path: string; roles: Role[]; fields?: Record<string, string> }
  > = [
    { method: "GET", path: "/admin/cards", roles: view },
    { method: "GET", path: "/admin/cards?q=2024", roles: view },
    { method: "GET", path: `/admin/cards/${id}`, roles: view },
    { method: "POST", path: `/admin/cards/${id}/loss`, roles: counter },
    { method: "POST", path: `/admin/cards/${id}/unloss`, roles: counter },
    {
      method: "POST",
      path: `/admin/cards/${id}/reissue`,
      roles: counter,
      fields: { chip_number: "" },
    },
    { method: "POST", path: `/admin/cards/${id}/reset-password`, roles: counter },
    { method: "POST", path: `/admin/cards/${id}/unlock`, roles: counter },
    { method: "POST", path: `/admin/cards/${id}/unbind`, roles: counter },
    { method: "POST", path: `/admin/cards/${id}/unlock-login`, roles: loginUnlock },
    { method: "GET", path: "/admin/cards/import", roles: importer },
    { method: "POST", path: "/admin/cards/import", roles: importer },
    { method: "GET", path: `/admin/cards/import/${importId}`, roles: importer },
    { method: "POST", path: `/admin/cards/import/999999/commit`, roles: importer },
  ];
  const anon = env.client("10.3.0.1");
  for (const r of routes) {
    const res = r.method === "GET"
      ? await anon.get(r.path)
      : await anon.post(r.path, r.fields ?? {});
    assert.equal(res.status, 303, `${r.method} ${r.path} signed out`);
    assert.match(res.headers.get("location")!, /^\/admin\/login/);
  }
  for (const role of ALL_ROLES) {
    const { client: c } = await makeStaff(env, `r_${role}`, [role]);
    for (const r of routes) {
      const res = r.method === "GET" ? await c.get(r.path) : await c.post(r.path, r.fields ?? {});
      const label = `${role} ${r.method} ${r.path} → ${res.status}`;
      if (r.roles.includes(role)) {
        assert.ok(res.status !== 403 && res.status < 500, label);
        assert.ok(
          res.status !== 303 || !res.headers.get("location")!.startsWith("/admin/login"),
          label,
        );
      } else {
        assert.equal(res.status, 403, label);
      }
    }
  }
  // The only changes made were by the card office (its loss/unloss/reset went through).
  const actors = new Set(
    (await listAudit(env.db, { targetType: "card_account" })).map((a) => a.username),
  );
  assert.deepEqual([...actors], [`r_${ROLES.cardOffice}`]);
});

Deno.test("search finds a card by 学号, name, chip number (old ones too) and bound phone", async () => {
  await using env = await cardWorld();
  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const accountId = await makeAccount(env.db, env.school.id, "13912345678");
  await env.db.updateTable("card_accounts").set({ account_id: accountId }).where(
    "id",
    "=",
    env.zhang.cardAccountId,
  )
    .execute();
  for (const q of ["2024010001", "20240100", "张三", "张", "3158642907", "13912345678"]) {
    const html = await c.page(`/admin/cards?q=${encodeURIComponent(q)}`);
    assert.match(html, /href="\/admin\/cards\/\d+">2024010001</, q);
  }
  for (const q of ["%", "_", "' or 1=1 --", "<script>", "13900000000"]) {
    const html = await c.page(`/admin/cards?q=${encodeURIComponent(q)}`);
    assert.match(html, /没有找到匹配的一卡通账户/, q);
    assert.doesNotMatch(html, /<script>/);
  }
  await c.post(`/admin/cards/${env.zhang.cardAccountId}/reissue`, {
    chip_number: "4000000001",
    confirm: "1",
  });
  assert.match(await c.page("/admin/cards?q=3158642907"), /2024010001/);
});

Deno.test("the card page shows binding, chips, lock state and history; counter operations are audited", async () => {
  await using env = await cardWorld();
  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const id = env.zhang.cardAccountId;
  const accountId = await makeAccount(env.db, env.school.id, "13912345670");
  await env.db.updateTable("card_accounts").set({ account_id: accountId, bound_at: new Date() })
    .where("id", "=", id)
    .execute();
  for (let i = 0; i < 5; i++) await checkCardPassword(env.db, env.deps, id, "000000");
  await recordEvent(env.db, loginThrottleKey("13912345670"), { limit: 1, windowSeconds: 900 });
  let page = await c.page(`/admin/cards/${id}`);
  for (
    const text of [
      "张三",
      "5301\\*{10}123X",
      "13912345670",
      "3158642907",
      "已锁定",
      "登录已锁定",
      "开户",
      "默认密码",
    ]
  ) {
    assert.match(page, new RegExp(text), text);
  }
  assert.doesNotMatch(page, /53010220050315123X/, "the 身份证 number is never shown whole");

  const post = async (path: string, fields: Record<string, string> = {}) => {
    const res = await c.post(`/admin/cards/${id}/${path}`, fields);
    return { status: res.status, location: res.headers.get("location"), html: await res.text() };
  };
  assert.equal((await post("unlock")).status, 303);
  assert.equal((await checkCardPassword(env.db, env.deps, id, "15123X")).ok, true);
  assert.equal((await post("unlock")).status, 422);
  assert.equal((await post("unlock-login")).status, 303);
  assert.equal(await lockedFor(env.db, loginThrottleKey("13912345670")), 0);

  assert.equal((await post("unloss")).status, 422);
  const loss = await post("loss");
  assert.equal(loss.location, `/admin/cards/${id}?done=loss`);
  const bad = await post("reissue", { chip_number: "<img src=x>" });
  assert.equal(bad.status, 422);
  assert.match(bad.html, /芯片卡号格式不正确/);
  assert.doesNotMatch(bad.html, /<img src=x>/);
  const current = await post("reissue", { chip_number: "3158642907" });
  assert.equal(current.status, 422);
  assert.match(current.html, /这是该卡当前的芯片卡号/);
  await createCardAccountForTest(env.db, env.deps, {
    schoolId: env.school.id,
    studentNumber: "2024010002",
    idNumber: IDS.li,
    chipNumber: "4000000009",
    name: "李四",
  });
  const taken = await post("reissue", { chip_number: "4000000009" });
  assert.match(taken.html, /已被使用/);
  // First the number is checked and the page says what will happen; nothing changes yet.
  const asked = await post("reissue", { chip_number: "4000000001" });
  assert.equal(asked.status, 200);
  assert.match(
    asked.html,
    /为 <strong>张三（2024010001）<\/strong> 补发新卡 <strong>4000000001<\/strong>。旧卡 <strong>3158642907<\/strong> 将永久注销/,
  );
  assert.equal(await findCardByChip(env.db, "4000000001"), null);
  assert.equal(
    (await post("reissue", { chip_number: "4000000001", confirm: "1" })).location,
    `/admin/cards/${id}?done=reissue`,
  );
  assert.equal((await post("unloss")).status, 303);
  assert.equal((await findCardByChip(env.db, "4000000001"))!.chipStatus, "active");
  assert.deepEqual((await blocklistSince(env.db, 0)).added, ["3158642907"]);

  await env.db.updateTable("card_accounts").set({ password_hash: "$argon2id$dummy" }).where(
    "id",
    "=",
    id,
  ).execute();
  assert.equal((await post("reset-password")).status, 303);
  assert.equal((await findBoundCard(env.db, accountId))!.passwordIsDefault, true);
  // 解绑 is a dangerous operation: only with the card's 学号 typed.
  for (const confirm of [undefined, "", "2024010002"]) {
    const refused = await post("unbind", confirm === undefined ? {} : { confirm });
    assert.equal(refused.status, 422);
    assert.match(refused.html, /请输入该卡的学号以确认/);
    assert.notEqual(await findBoundCard(env.db, accountId), null);
  }
  assert.equal((await post("unbind", { confirm: " 2024010001 " })).status, 303);
  assert.equal(await findBoundCard(env.db, accountId), null);
  assert.equal((await post("unbind", { confirm: "2024010001" })).status, 422);

  page = await c.page(`/admin/cards/${id}`);
  for (const text of ["补卡", "挂失", "重置一卡通密码", "危险操作", "销户"]) {
    assert.match(page, new RegExp(text));
  }
  const audit = await listAudit(env.db, { targetType: "card_account", targetId: String(id) });
  assert.deepEqual(audit.map((a) => a.action).reverse(), [
    "card.password_unlocked",
    "account.login_unlocked",
    "card.loss_reported",
    "card.reissued",
    "card.loss_lifted",
    "card.password_reset",
    "card.unbound",
  ]);
  assert.ok(audit.every((a) => a.username === "clerk" && a.before && a.after));
  assert.doesNotMatch(JSON.stringify(audit), /53010220050315123X|id_number_hash/);
  assert.equal((await c.get("/admin/cards/999999")).status, 404);
});

Deno.test("import through the console: upload, preview with per-row errors, commit, re-upload changes nothing", async () => {
  await using env = await cardWorld();
  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const form = await c.page("/admin/cards/import");
  assert.match(form, /云南城市建设职业学院/);
  const csv =
    `\ufeff${HEADER}\r\n2025000001,陈一,530102200501011233,7000000001,学生\r\n2025000002,<b>x</b>,530102200501011233,7000000002,学生\r\n`;
  const empty = await upload(c, { school_id: String(env.school.id) }, new Uint8Array());
  assert.equal(empty.status, 422);
  assert.match(await empty.text(), /请选择 Excel 或 CSV 文件/);
  const noSchool = await upload(c, { school_id: "abc" }, new TextEncoder().encode(csv));
  assert.equal(noSchool.status, 422);
  assert.match(await noSchool.text(), /请选择学校/);

  const res = await upload(
    c,
    { school_id: String(env.school.id) },
    new TextEncoder().encode(csv),
  );
  assert.equal(res.status, 303);
  const previewPath = res.headers.get("location")!;
  const preview = await c.page(previewPath);
  assert.match(preview, /将新开户 <strong>1<\/strong>/);
  assert.match(preview, /有错误（将跳过） <strong>1<\/strong>/);
  assert.match(preview, /<td>3<\/td><td>2025000002<\/td><td>姓名格式不正确/);
  assert.doesNotMatch(preview, /<b>x<\/b>/);
  assert.equal(await findCardByChip(env.db, "7000000001"), null, "a preview changes nothing");
  const commit = await c.post(`${previewPath}/commit`);
  assert.equal(commit.status, 303);
  assert.match(
    await c.page(previewPath),
    /新开户 1，资料更新 0，补卡 0，无变化 0，跳过（有错误） 1/,
  );
  assert.equal((await findCardByChip(env.db, "7000000001"))!.name, "陈一");
  const twice = await c.post(`${previewPath}/commit`);
  assert.equal(twice.status, 422);
  assert.match(await twice.text(), /不能重复提交/);

  const again = await upload(
    c,
    { school_id: String(env.school.id) },
    new TextEncoder().encode(csv),
  );
  const againPreview = await c.page(again.headers.get("location")!);
  assert.match(
    againPreview,
    /将新开户 <strong>0<\/strong>，资料更新 <strong>0<\/strong>，补卡 <strong>0<\/strong>，无变化 <strong>1<\/strong>/,
  );
});

import assert from "node:assert/strict";
import { cardWorld, IDS, makeAccount, signInStudent } from "../testkit/mod.ts";
import { blocklistSince, findBoundCard } from "./mod.ts";

Deno.test("一卡通安全中心 lists its four functions and needs a signed-in student", async () => {
  await using env = await cardWorld();
  const anon = await env.client().get("/security");
  assert.equal(anon.status, 303);
  assert.match(anon.headers.get("location")!, /^\/login\?next=%2Fsecurity/);
  const c = env.client();
  await signInStudent(env, c, await makeAccount(env.db, env.school.id));
  const html = await c.page("/security");
  for (const label of ["一卡通安全中心", "一卡通账号绑定", "一卡通密码修改", "挂失", "解挂"]) {
    assert.match(html, new RegExp(label));
  }
  assert.match(html, /href="\/security\/bind"/);
  assert.match(html, /尚未绑定一卡通账号/);
});

Deno.test("binding on the page ends the session and says to sign in again", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  const c = env.client();
  await signInStudent(env, c, accountId);
  const other = env.client("10.1.0.9");
  await signInStudent(env, other, accountId);
  const form = await c.page("/security/bind");
  assert.match(form, /学号/);
  assert.match(form, /一卡通密码/);
  assert.match(form, />确认</);
  const res = await c.post("/security/bind", {
    student_number: "2024010001",
    password: "15123X",
  });
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.match(html, /绑定成功后需要重新登录/);
  assert.match(html, /href="\/login/);
  assert.ok(!c.cookies.has("yxt_sid"), "the session cookie is cleared");
  assert.equal((await c.get("/security")).status, 303);
  assert.equal((await other.get("/security")).status, 303, "every session of the account ended");
  assert.equal((await findBoundCard(env.db, accountId))!.studentNumber, "2024010001");
});

Deno.test("bad binding input is answered on the form with a message, input kept, nothing bound", async () => {
  await using env = await cardWorld();
  const accountId = await makeAccount(env.db, env.school.id);
  const c = env.client();
  await signInStudent(env, c, accountId);
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{}, /请输入学号/],
    [{ student_number: "", password: "" }, /请输入学号/],
    [{ student_number: "<script>alert(1)</script>", password: "15123X" }, /学号格式不正确/],
    [{ student_number: "2024010001' OR '1'='1", password: "15123X" }, /学号格式不正确/],
    [{ student_number: "2024010001\u200b", password: "x".repeat(500) }, /输入过长/],
    [{ student_number: "2024010001", password: "' or 1=1 --" }, /学号或一卡通密码错误/],
    [{ student_number: "9999999999", password: "15123X" }, /学号或一卡通密码错误/],
  ];
  for (const [fields, message] of cases) {
    const res = await c.post("/security/bind", fields);
    assert.ok(
      res.status === 422 || res.status === 429,
      `status ${res.status} for ${JSON.stringify(fields)}`,
    );
    const html = await res.text();
    assert.match(html, message, JSON.stringify(fields));
    assert.doesNotMatch(html, /<script>alert/);
  }
  // Full-width digits from a Chinese IME read as the same 学号.
  const ok = await c.post("/security/bind", {
    student_number: "２０２４０１０００１",
    password: "15123X",
  });
  assert.equal(ok.status, 200);
  assert.equal((await findBoundCard(env.db, accountId))!.studentNumber, "2024010001");
});

Deno.test("a taken card tells the student to visit the card office; a locked card says so with status 429", async () => {
  await using env = await cardWorld();
  const first = await makeAccount(env.db, env.school.id);
  const c1 = env.client();
  await signInStudent(env, c1, first);
  await c1.post("/security/bind", { student_number: "2024010001", password: "15123X" });
  const c2 = env.client("10.1.0.2");
  await signInStudent(env, c2, await makeAccount(env.db, env.school.id));
  const taken = await c2.post("/security/bind", {
    student_number: "2024010001",
    password: "15123X",
  });
  assert.equal(taken.status, 422);
  assert.match(await taken.text(), /请到一卡通中心办理/);
  for (let i = 0; i < 4; i++) {
    await c2.post("/security/bind", { student_number: "2024010001", password: "000000" });
  }
  const locked = await c2.post("/security/bind", {
    student_number: "2024010001",
    password: "000000",
  });
  assert.equal(locked.status, 429);
  assert.match(await locked.text(), /已锁定，请30分钟后再试/);
});

async function boundClient(env: Awaited<ReturnType<typeof cardWorld>>) {
  const accountId = await makeAccount(env.db, env.school.id);
  await env.db.updateTable("card_accounts").set({ account_id: accountId }).where(
    "id",
    "=",
    env.zhang.cardAccountId,
  )
    .execute();
  const c = env.client();
  await signInStudent(env, c, accountId);
  return { c, accountId };
}

Deno.test("the password page changes the card password and refuses weak ones with a message", async () => {
  await using env = await cardWorld();
  const { c, accountId } = await boundClient(env);
  const home = await c.page("/security");
  assert.match(home, /仍是默认密码/);
  const page = await c.page("/security/password");
  assert.match(page, /原密码/);
  assert.match(page, /新密码/);
  const weak = await c.post("/security/password", {
    old_password: "15123X",
    new_password: "111111",
  });
  assert.equal(weak.status, 422);
  assert.match(await weak.text(), /6位相同/);
  const wrong = await c.post("/security/password", {
    old_password: "15123Y",
    new_password: "480913",
  });
  assert.equal(wrong.status, 422);
  assert.match(await wrong.text(), /一卡通密码错误，还可尝试4次/);
  const ok = await c.post("/security/password", {
    old_password: "15123X",
    new_password: "480913",
  });
  assert.equal(ok.status, 303);
  assert.equal(ok.headers.get("location"), "/security?done=password");
  assert.match(await c.page("/security?done=password"), /一卡通密码修改成功/);
  assert.equal((await findBoundCard(env.db, accountId))!.passwordIsDefault, false);
  assert.doesNotMatch(await c.page("/security"), /仍是默认密码/);
});

Deno.test("the loss page shows the chip number large, pre-filled, and reports the loss", async () => {
  await using env = await cardWorld();
  const { c, accountId } = await boundClient(env);
  const page = await c.page("/security/loss");
  assert.match(page, /class="big-number" id="chip-number">3158642907</);
  assert.match(page, /截图/);
  assert.match(page, /并非学号/);
  assert.match(page, /name="chip_number"[^>]*\s+value="3158642907"|value="3158642907"/);
  for (const label of ["一卡通芯片卡号", "身份证", "一卡通密码", "确认"]) {
    assert.match(page, new RegExp(label));
  }

  const bad = await c.post("/security/loss", {
    chip_number: "3158642907",
    id_number: IDS.li,
    password: "15123X",
  });
  assert.equal(bad.status, 422);
  const badHtml = await bad.text();
  assert.match(badHtml, /身份证号与一卡通登记信息不符/);
  assert.doesNotMatch(badHtml, new RegExp(IDS.li), "the 身份证 number is not echoed back");
  assert.equal((await findBoundCard(env.db, accountId))!.status, "normal");

  const res = await c.post("/security/loss", {
    chip_number: "3158642907",
    id_number: IDS.zhang,
    password: "15123X",
  });
  assert.equal(res.status, 303);
  const done = await c.page(res.headers.get("location")!);
  assert.match(done, /挂失成功/);
  assert.match(done, /3158642907/);
  assert.equal((await findBoundCard(env.db, accountId))!.status, "loss_reported");
  assert.deepEqual((await blocklistSince(env.db, 0)).added, ["3158642907"]);
  assert.equal((await findBoundCard(env.db, accountId))!.paymentCodeFrozen, false);
});

Deno.test("unloss with a wrong chip is refused; with the noted chip it lifts the loss", async () => {
  await using env = await cardWorld();
  const { c, accountId } = await boundClient(env);
  const normal = await c.page("/security/unloss");
  assert.match(normal, /未挂失/);
  await c.post("/security/loss", {
    chip_number: "3158642907",
    id_number: IDS.zhang,
    password: "15123X",
    freeze_payment_code: "1",
  });
  assert.equal((await findBoundCard(env.db, accountId))!.paymentCodeFrozen, true);
  const form = await c.page("/security/unloss");
  assert.match(form, /name="chip_number"/);
  for (
    const chip of [
      "2024010001",
      "3158642908",
      "'; drop table card_chips; --",
      "３１５８６４２９０８",
    ]
  ) {
    const res = await c.post("/security/unloss", {
      chip_number: chip,
      id_number: IDS.zhang,
      password: "15123X",
    });
    assert.equal(res.status, 422, chip);
    assert.match(await res.text(), /芯片卡号/);
  }
  assert.equal((await findBoundCard(env.db, accountId))!.status, "loss_reported");
  const ok = await c.post("/security/unloss", {
    chip_number: "3158642907",
    id_number: IDS.zhang,
    password: "15123X",
  });
  assert.equal(ok.status, 303);
  assert.match(await c.page(ok.headers.get("location")!), /解挂成功/);
  const card = (await findBoundCard(env.db, accountId))!;
  assert.equal(card.status, "normal");
  assert.equal(card.paymentCodeFrozen, false);
  assert.deepEqual((await blocklistSince(env.db, 0)).added, []);
});

Deno.test("pages for functions that need a card point an unbound student to binding", async () => {
  await using env = await cardWorld();
  const c = env.client();
  await signInStudent(env, c, await makeAccount(env.db, env.school.id));
  for (const path of ["/security/password", "/security/loss", "/security/unloss"]) {
    assert.match(await c.page(path), /请先绑定一卡通账号/, path);
  }
  const res = await c.post("/security/loss", {
    chip_number: "3158642907",
    id_number: IDS.zhang,
    password: "15123X",
  });
  assert.equal(res.status, 422);
  assert.match(await res.text(), /请先绑定一卡通账号/);
  assert.deepEqual((await blocklistSince(env.db, 0)).added, []);
});

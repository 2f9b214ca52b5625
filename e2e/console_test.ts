/**
 * The staff console at the card office's 1366×768 (issue 19): the grouped navigation, the header
 * search and its `/` shortcut, the skip link; the counter screen with its money, its in-page
 * confirmations and its danger zone; the audit log's filters; an Excel import and export round
 * trip; a settlement from preparation to paid by two finance members; a small graduation batch.
 * axe-core on every console page is console_axe_test.ts.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import ExcelJS from "exceljs";
import { readXlsx } from "../modules/platform/sheets.ts";
import { acceptConfirm, assertAccessible } from "./_ui.ts";
import {
  DESK,
  journey,
  type Page,
  type RunningServer,
  signInDemoAdmin,
  signInFirstTime,
  staffMember,
} from "./_support.ts";

async function desk(page: Page, server: RunningServer): Promise<void> {
  await page.setViewportSize(DESK);
  await signInDemoAdmin(page, server);
}

async function text(page: Page, selector = "body"): Promise<string> {
  return await page.locator(selector).first().textContent() ?? "";
}

/** The id of the element that has the focus. */
async function activeId(page: Page): Promise<string | undefined> {
  // deno-lint-ignore no-explicit-any
  return await page.evaluate(() => (globalThis as any).document.activeElement?.id);
}

/** The bytes of what a click downloads. */
async function download(page: Page, click: () => Promise<void>): Promise<Uint8Array> {
  const [file] = await Promise.all([page.waitForEvent("download"), click()]);
  const path = await file.path();
  return await Deno.readFile(path!);
}

journey(
  "console: grouped navigation, / search, the counter screen and its danger zone, audit filters",
  {},
  async ({ page, server, shot }) => {
    await desk(page, server);
    const nav = page.getByRole("navigation", { name: "管理后台导航" });
    for (const group of ["一卡通中心", "财务处", "水电", "系统"]) {
      await nav.getByRole("heading", { name: group }).waitFor();
    }
    await assertAccessible(page, "管理后台");
    await shot("home");

    // The skip link is the first stop of the keyboard and leads to the page's main.
    await page.keyboard.press("Tab");
    const skip = page.getByRole("link", { name: "跳到正文" });
    assert.equal(
      // deno-lint-ignore no-explicit-any
      await skip.evaluate((el) => el === (globalThis as any).document.activeElement),
      true,
    );
    assert.ok((await skip.boundingBox())!.y >= 0, "visible when focused");
    await page.keyboard.press("Enter");
    assert.equal(await activeId(page), "main");

    // "/" jumps to the search from anywhere but a text field.
    await page.keyboard.press("/");
    assert.equal(await activeId(page), "admin-search-q");
    await page.keyboard.type("张三");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/admin\/cards\?q=/);
    assert.match(await text(page, ".pager__count"), /共 1 条/);
    await page.getByRole("link", { name: "2024010001" }).click();

    // The counter screen: money, states, chips, in one screen.
    await page.waitForURL(/\/admin\/cards\/\d+$/);
    await page.locator("#card-balance").waitFor();
    assert.equal(await text(page, "#card-balance"), "¥200.00");
    assert.match(await text(page, "#card-states"), /正常[\s\S]*已绑定一信通账号/);
    assert.match(await text(page, "#card-money"), /最近10笔交易[\s\S]*调账/);
    await assertAccessible(page, "一卡通 · 柜台");
    await shot("counter");

    // 挂失 asks in the page, naming the holder.
    await page.getByRole("button", { name: "挂失", exact: true }).click();
    assert.match(await text(page, "[role=alertdialog]"), /张三（2024010001）办理挂失/);
    await acceptConfirm(page);
    await page.getByText("已挂失", { exact: true }).waitFor();
    assert.match(await text(page, "#card-status"), /已挂失/);

    // 补卡: a taken number is refused before anything is asked; then the page names the old chip.
    await page.getByLabel("补卡：新卡芯片卡号").fill("3158642908");
    await page.getByRole("button", { name: "下一步" }).click();
    await page.getByText("该芯片卡号已被使用，请核对新卡的芯片卡号").waitFor();
    await page.getByLabel("补卡：新卡芯片卡号").fill("9300000001");
    await page.getByRole("button", { name: "下一步" }).click();
    const confirm = page.getByRole("region", { name: "确认补卡" });
    assert.match(
      await confirm.textContent() ?? "",
      /补发新卡 9300000001。旧卡 3158642907 将永久注销/,
    );
    await confirm.getByRole("button", { name: "确认补卡" }).click();
    await page.getByText("补卡完成，旧卡已注销").waitFor();

    // 解绑 sits in 危险操作 and needs the 学号 typed.
    const danger = page.getByRole("region", { name: "危险操作" });
    await danger.getByLabel(/请输入该卡学号/).fill("2024010002");
    await danger.getByRole("button", { name: "解除绑定" }).click();
    await acceptConfirm(page);
    await page.getByText("请输入该卡的学号以确认").waitFor();
    assert.match(await text(page, "#card-states"), /已绑定一信通账号/);
    await page.getByRole("region", { name: "危险操作" }).getByLabel(/请输入该卡学号/).fill(
      "2024010001",
    );
    await page.getByRole("region", { name: "危险操作" }).getByRole("button", { name: "解除绑定" })
      .click();
    await acceptConfirm(page);
    await page.getByText("已解除绑定").waitFor();
    assert.match(await text(page, "#card-states"), /未绑定一信通账号/);
    await page.getByRole("link", { name: "全部交易记录 →" }).click();
    await page.getByRole("heading", { name: /交易记录：张三/ }).waitFor();
    await assertAccessible(page, "交易记录");

    // 审计日志: Chinese labels, a date range, the changed fields marked.
    await nav.getByRole("link", { name: "审计日志" }).click();
    await page.getByLabel("操作").selectOption({ label: "补卡" });
    await page.getByRole("button", { name: "筛选" }).click();
    await page.waitForURL(/action=card\.reissued/);
    assert.match(await text(page, ".pager__count"), /共 1 条/);
    assert.match(await text(page, "table.audit"), /补卡[\s\S]*一卡通账户/);
    assert.ok(await page.locator("table.diff ins").count() > 0, "what changed is marked");
    await page.getByLabel("起始日期").fill("2020-01-01");
    await page.getByLabel("截止日期").fill("2020-01-02");
    await page.getByRole("button", { name: "筛选" }).click();
    await page.getByText("没有符合筛选条件的记录").waitFor();
    await assertAccessible(page, "审计日志");
    await shot("audit");
  },
);

journey(
  "console: an Excel import of cardholders and the search's Excel export agree",
  {},
  async ({ page, server }) => {
    await desk(page, server);
    await page.goto(server.url("/admin/cards/import"));
    const template = await download(
      page,
      () => page.getByRole("link", { name: /Excel 模板/ }).click(),
    );
    const workbook = new ExcelJS.Workbook();
    await workbook.xlsx.load(template.buffer as ArrayBuffer);
    const sheet = workbook.getWorksheet("持卡人")!;
    const people = [
      ["2026100001", "陈晨", "530111200608084519", "9400000001", "学生"],
      ["2026100002", "林一", "53011120060808451X", "9400000002", "学生"],
      ["2026100003", "周老师", "530111198001014514", "9400000003", "教职工"],
    ];
    for (const p of people) sheet.addRow(p);
    const filled = new Uint8Array(await workbook.xlsx.writeBuffer());
    await page.getByLabel("学校").selectOption({ label: "云南城市建设职业学院" });
    await page.locator('input[type="file"]').setInputFiles({
      name: "新生名单.xlsx",
      mimeType: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      buffer: Buffer.from(filled),
    });
    await page.getByRole("button", { name: "上传并预览" }).click();
    await page.waitForURL(/\/admin\/cards\/import\/\d+$/);
    const plan = await text(page, "#import-plan");
    // 林一's 身份证 has a wrong check character: its row is listed, not imported.
    assert.match(plan, /将新开户 2/);
    assert.match(await text(page), /身份证号不正确/);
    await page.getByRole("button", { name: "确认导入" }).click();
    await acceptConfirm(page);
    await page.locator("#import-result").waitFor();

    await page.goto(server.url("/admin/cards?q=20261000"));
    assert.match(await text(page, ".pager__count"), /共 2 条/);
    const exported = await download(
      page,
      () => page.getByRole("link", { name: "导出 Excel" }).click(),
    );
    const rows = (await readXlsx(exported)).map((r) => r.cells.slice(0, 6));
    assert.deepEqual(rows, [
      ["学号", "姓名", "学校", "类型", "卡类别", "芯片卡号"],
      ["2026100001", "陈晨", "云南城市建设职业学院", "学生", "学生", "9400000001"],
      ["2026100003", "周老师", "云南城市建设职业学院", "教职工", "教职工", "9400000003"],
    ]);
    await assertAccessible(page, "一卡通查询");
  },
);

/** A finance member (财务处) made by the admin, signed in on a page of their own. */
function financeMember(admin: Page, server: RunningServer, username: string): Promise<Page> {
  const name = username === "caiwu1" ? "财务甲" : "财务乙";
  return staffMember(admin, server, { username, name, role: "财务处" });
}

journey(
  "console: a merchant's statement from preparation to paid, by two finance members, seen by its operator",
  {},
  async ({ page, server, shot }) => {
    await desk(page, server);
    const maker = await financeMember(page, server, "caiwu1");
    const checker = await financeMember(page, server, "caiwu2");

    await maker.getByRole("navigation", { name: "管理后台导航" }).getByRole("link", {
      name: "商户结算",
    })
      .click();
    // The demo's outsourced window: last month's takings (2 cards × ¥37.30) owed, not yet prepared.
    assert.match(await text(maker, "table"), /二食堂风味窗口（外包）[\s\S]*¥74\.60/);
    await maker.getByRole("button", { name: "编制已结束周期的结算单" }).click();
    await maker.getByText("已编制 1 张结算单").waitFor();
    await maker.getByRole("link", { name: /^#\d+$/ }).first().click();
    assert.match(await text(maker, "#statement-payable"), /¥70\.87/);
    await maker.getByText("本结算单由您编制，须由另一位财务人员复核").waitFor();
    assert.equal(await maker.getByRole("button", { name: "复核通过" }).count(), 0);
    await assertAccessible(maker, "结算单");
    const statement = maker.url();

    await checker.goto(statement);
    await checker.getByRole("button", { name: "复核通过" }).click();
    await acceptConfirm(checker);
    await checker.getByText("已复核通过，结算单已冻结，可以付款").waitFor();

    await maker.reload();
    await maker.getByLabel("银行付款流水号").fill("ABC2026120700017");
    await maker.getByRole("button", { name: "登记付款" }).click();
    await acceptConfirm(maker);
    await maker.getByText("已登记付款").waitFor();
    assert.equal(await text(maker, "#statement-state"), "已付款");
    assert.equal(await text(maker, "#statement-bank-ref"), "ABC2026120700017");
    await shot("paid");
    await maker.goto(`${statement}/print`);
    assert.match(await text(maker), /商户结算单[\s\S]*¥70\.87[\s\S]*ABC2026120700017/);
    // The books still balance, the merchant now owed nothing of last month.
    await maker.goto(server.url("/admin/ledger"));
    await maker.getByText(/账务平衡/).waitFor();

    // The window's operator gets a read-only sign-in on the merchant's page and sees it paid.
    await page.goto(server.url("/admin/merchants"));
    await page.getByRole("row", { name: /二食堂风味窗口（外包）/ })
      .getByRole("link", { name: "编辑 / 终端" }).click();
    await page.getByLabel("经营者用户名").fill("fengwei");
    await page.getByLabel("经营者姓名").fill("风味窗口经营者");
    await page.getByLabel("初始密码").fill("Start12345");
    await page.getByRole("button", { name: "开设经营者账号" }).click();
    await page.getByText("已开设经营者账号").waitFor();
    const operator = await signInFirstTime(page, server, "fengwei");
    await operator.getByRole("navigation", { name: "管理后台导航" })
      .getByRole("link", { name: "本商户结算" }).click();
    const mine = await text(operator, "#portal-statements");
    assert.match(mine, /¥70\.87[\s\S]*已付款[\s\S]*ABC2026120700017/);
    assert.equal(await operator.getByRole("link", { name: "商户结算", exact: true }).count(), 0);
    await assertAccessible(operator, "本商户结算");
    const denied = await operator.goto(server.url("/admin/finance/settlements"));
    assert.equal(denied?.status(), 403);
  },
);

journey(
  "console: a small graduation batch, from preview to its result file",
  {},
  async ({ page, server, shot }) => {
    await desk(page, server);
    await page.goto(server.url("/admin/closeout"));
    await page.getByRole("link", { name: "新建离校批次" }).click();
    await page.getByLabel("批次名称").fill("2024级演示批次");
    await page.getByLabel(/学号前缀/).fill("202401");
    const today = await page.getByLabel(/离校日期/).getAttribute("min");
    await page.getByLabel(/离校日期/).fill(today!);
    await page.getByRole("button", { name: "建立批次并预览" }).click();
    await page.waitForURL(/\/admin\/closeout\/\d+\?done=created$/);
    const preview = await text(page, "#closeout-preview");
    assert.match(preview, /卡数\s*3/);
    // ¥200.00 each; 王芳 paid the outsourced window ¥37.30 last month (the demo's takings).
    assert.match(preview, /余额合计\s*¥562\.70/);
    await assertAccessible(page, "离校预览");
    await shot("preview");
    await page.getByRole("button", { name: "通知持卡人" }).click();
    await acceptConfirm(page);
    await page.getByText("已向持卡人发送离校销户通知").waitFor();
    await page.getByRole("button", { name: "确认办理" }).click();
    await acceptConfirm(page);
    // The progress bar follows the worker until every card is done.
    await page.locator("#closeout-status", { hasText: "已完成" }).waitFor({ timeout: 60_000 });
    assert.equal(await text(page, "#closeout-done"), "3");
    await shot("done");
    const result = await download(
      page,
      () => page.getByRole("link", { name: "导出 Excel" }).click(),
    );
    const rows = await readXlsx(result);
    assert.deepEqual(rows.slice(1).map((r) => [r.cells[0], r.cells[2], r.cells[3]]), [
      ["2024010001", "已办理", "已销户"],
      ["2024010002", "已办理", "已销户"],
      ["2024010003", "已办理", "已销户"],
    ]);
    await page.goto(server.url("/admin/cards?q=2024010001"));
    assert.match(await text(page, "table"), /已注销/);
  },
);

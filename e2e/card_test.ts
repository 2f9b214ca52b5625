/**
 * The card journey of issue 3: the card office imports a cardholder; the student registers, binds
 * the card with the default card password, signs in again, sees the reminders, changes the card
 * password, reports the card lost (noting the chip number), lifts the loss; the card office
 * reissues the card during a second loss and the student lifts it with the new chip's number.
 */
import assert from "node:assert/strict";
import iconv from "iconv-lite";
import { acceptConfirm } from "./_ui.ts";
import { journey, type Page, signInDemoAdmin } from "./_support.ts";

const PHONE = "13912340001";
const STUDENT_NUMBER = "2025090001";
const ID_NUMBER = "530111200608084519";
const DEFAULT_PASSWORD = "084519";
const NEW_PASSWORD = "480913";
const CHIP = "9100000001";
const NEW_CHIP = "9100000002";

async function body(page: Page): Promise<string> {
  return await page.textContent("body") ?? "";
}

journey(
  "card: import, bind, card password, loss, unloss, reissue",
  {},
  async ({ page, context, server, shot }) => {
    // ---- 一卡通中心 imports a GBK file, as Excel in China saves it.
    const staff = await context.newPage();
    await signInDemoAdmin(staff, server);
    await staff.getByRole("link", { name: "一卡通", exact: true }).first().click();
    await staff.getByRole("link", { name: "导入持卡人" }).click();
    await staff.waitForURL(/\/admin\/cards\/import$/);
    const csv =
      `学号,姓名,身份证号,芯片卡号,类型\r\n${STUDENT_NUMBER},刘洋,${ID_NUMBER},${CHIP},学生\r\n`;
    await staff.getByLabel("学校").selectOption({ label: "云南城市建设职业学院" });
    await staff.locator('input[type="file"]').setInputFiles({
      name: "持卡人.csv",
      mimeType: "text/csv",
      buffer: iconv.encode(csv, "gbk") as unknown as Buffer,
    });
    await staff.getByRole("button", { name: "上传并预览" }).click();
    await staff.waitForURL(/\/admin\/cards\/import\/\d+$/);
    assert.match(await staff.locator("#import-plan").textContent() ?? "", /将新开户 1/);
    assert.match(await body(staff), /刘洋/);
    await staff.getByRole("button", { name: "确认导入" }).click();
    await acceptConfirm(staff);
    await staff.locator("#import-result").waitFor();
    assert.match(await staff.locator("#import-result").textContent() ?? "", /新开户 1/);

    // ---- The student registers and binds the card with the default card password.
    await page.goto(server.url("/register"));
    await page.getByLabel("手机号").fill(PHONE);
    await page.getByLabel("登录密码").fill("Start1234");
    await page.getByLabel("学校").selectOption({ label: "云南城市建设职业学院" });
    await page.getByRole("button", { name: "注册", exact: true }).click();
    await page.waitForURL(server.url("/"));
    await page.getByRole("link", { name: "我的" }).click();
    await page.getByRole("link", { name: /一卡通安全中心/ }).click();
    await page.waitForURL(server.url("/security"));
    await shot("security-centre");
    await page.getByRole("link", { name: /一卡通账号绑定/ }).click();
    await page.getByLabel("学号").fill(STUDENT_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill("000000");
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText(/学号或一卡通密码错误，还可尝试4次/).waitFor();
    await page.getByLabel("一卡通密码", { exact: true }).fill(DEFAULT_PASSWORD);
    await shot("bind");
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText("绑定成功后需要重新登录").waitFor();
    await shot("bound-sign-in-again");

    // The session ended: 重新登录 leads to the login page, and back to 一卡通安全中心 afterwards.
    await page.getByRole("link", { name: "重新登录" }).click();
    await page.waitForURL(/\/login/);
    await page.getByLabel("手机号").fill(PHONE);
    await page.getByLabel("登录密码").fill("Start1234");
    await page.getByRole("button", { name: "登录", exact: true }).click();
    await page.waitForURL(server.url("/security"));
    assert.match(await body(page), /刘洋（学号 2025090001）/);

    // The home page reminds to change the card password and bind an email.
    await page.goto(server.url("/"));
    const home = await body(page);
    assert.match(home, /绑定成功后请立即修改一卡通密码、绑定邮箱/);
    assert.match(home, /一卡通密码仍为默认密码/);
    assert.match(home, /尚未绑定邮箱/);
    await shot("home-reminders");

    // ---- 一卡通密码修改: [原密码], [新密码], [确认].
    await page.goto(server.url("/security"));
    await page.getByRole("link", { name: "一卡通密码修改" }).click();
    await page.getByLabel("原密码").fill(DEFAULT_PASSWORD);
    await page.getByLabel("新密码").fill("123456");
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText("新密码不能是连续的数字").waitFor();
    await page.getByLabel("原密码").fill(DEFAULT_PASSWORD);
    await page.getByLabel("新密码").fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText("一卡通密码修改成功").waitFor();
    await page.goto(server.url("/"));
    assert.doesNotMatch(await body(page), /一卡通密码仍为默认密码/);

    // ---- 挂失: the chip number (not the 学号) is shown large and pre-filled.
    await page.goto(server.url("/security"));
    await page.getByRole("link", { name: "挂失", exact: true }).click();
    await page.waitForURL(server.url("/security/loss"));
    assert.equal((await page.locator("#chip-number").textContent())?.trim(), CHIP);
    assert.equal(await page.getByLabel("一卡通芯片卡号").inputValue(), CHIP);
    assert.match(await body(page), /截图/);
    await shot("loss-form");
    await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await acceptConfirm(page, "确认挂失");
    await page.getByText(/挂失成功/).waitFor();
    assert.equal((await page.locator("#chip-number").textContent())?.trim(), CHIP);
    await shot("loss-reported");

    // ---- 解挂 with the noted chip number; a wrong one is refused first.
    await page.goto(server.url("/security/unloss"));
    await page.getByLabel("一卡通芯片卡号").fill(STUDENT_NUMBER);
    await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText(/芯片卡号不正确/).waitFor();
    await page.getByLabel("一卡通芯片卡号").fill(CHIP);
    await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText("解挂成功").waitFor();
    await shot("loss-lifted");

    // ---- Lost again; the card office issues a new chip; the student lifts the loss with it.
    await page.goto(server.url("/security/loss"));
    await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await acceptConfirm(page, "确认挂失");
    await page.getByText(/挂失成功/).waitFor();

    await staff.goto(server.url(`/admin/cards?q=${STUDENT_NUMBER}`));
    await staff.getByRole("link", { name: STUDENT_NUMBER }).click();
    assert.match(await staff.locator("#card-status").textContent() ?? "", /已挂失/);
    assert.match(await body(staff), /139\d{8}/);
    // 补卡 checks the new number first, then names the chip it cancels for good.
    await staff.getByLabel("补卡：新卡芯片卡号").fill(NEW_CHIP);
    await staff.getByRole("button", { name: "下一步" }).click();
    const asked = staff.getByRole("region", { name: "确认补卡" });
    assert.match(
      await asked.textContent() ?? "",
      new RegExp(`补发新卡 ${NEW_CHIP}。旧卡 ${CHIP} 将永久注销`),
    );
    await asked.getByRole("button", { name: "确认补卡" }).click();
    await staff.getByText("补卡完成，旧卡已注销").waitFor();

    await page.goto(server.url("/security/unloss"));
    await page.getByLabel("一卡通芯片卡号").fill(NEW_CHIP);
    await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
    await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole("button", { name: "确认" }).click();
    await page.getByText("解挂成功").waitFor();
    await page.goto(server.url("/security/loss"));
    assert.equal((await page.locator("#chip-number").textContent())?.trim(), NEW_CHIP);
    await shot("new-chip");

    // The card office sees the history; the old chip is cancelled for good.
    await staff.reload();
    const detail = await body(staff);
    assert.match(detail, /已注销/);
    for (const event of ["开户", "绑定一信通账号", "修改一卡通密码", "挂失", "解挂", "补卡"]) {
      assert.match(detail, new RegExp(event), event);
    }
    assert.match(await staff.locator("#card-status").textContent() ?? "", /正常/);
  },
);

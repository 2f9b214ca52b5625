/**
 * A new student's first day: register, sign in, bind an email with the code that arrives over
 * SMTP, sign out, reset the forgotten password by email code, and sign in with the new one.
 */
import assert from "node:assert/strict";
import { journey, nextCode } from "./_support.ts";

const PHONE = "13912345678";
const EMAIL = "student42@qq.com";

journey("account: register, bind email, reset password by email", { smtp: true }, async (t) => {
  const { page, server, shot } = t;
  const smtp = t.smtp!;

  // Signed out, 智校园 sends the visitor to the login page.
  await page.goto(server.url("/"));
  await page.waitForURL(/\/login\?next=%2F$/);
  await assert.doesNotReject(page.getByRole("link", { name: "忘记密码" }).waitFor());
  await shot("login");

  // 立即注册: [手机号], [登录密码], [学校], [注册].
  await page.getByRole("link", { name: "立即注册" }).click();
  await page.waitForURL(/\/register/);
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill("Start1234");
  await page.getByLabel("学校").selectOption({ label: "云南城市建设职业学院" });
  await shot("register");
  await page.getByRole("button", { name: "注册", exact: true }).click();
  await page.waitForURL(server.url("/"));
  // 智校园: one [付款码] (the wallet card's; 付款码设置 is another tile).
  assert.equal(await page.getByRole("link", { name: "付款码", exact: true }).count(), 1);
  await shot("home-after-register");

  // 我的 → 退出登录, then sign in with the password just chosen.
  await page.getByRole("link", { name: "我的" }).click();
  await page.waitForURL(server.url("/me"));
  assert.match(await page.textContent("body") ?? "", /139\*\*\*\*5678/);
  await shot("me");
  await page.getByRole("button", { name: "退出登录" }).click();
  await page.waitForURL(/\/login$/);
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill("Start1234");
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.waitForURL(server.url("/"));

  // 我的 → [绑定邮箱]: [邮箱], [发送验证码] (htmx, with a countdown), the code from SMTP, [确定].
  await page.goto(server.url("/me"));
  await page.getByRole("link", { name: /绑定邮箱/ }).click();
  await page.waitForURL(/\/me\/email$/);
  await page.getByLabel("邮箱").fill(EMAIL);
  const mailWait = nextCode(smtp, EMAIL);
  await page.getByRole("button", { name: "发送验证码" }).click();
  await page.getByText(`验证码已发送至 ${EMAIL}`).waitFor();
  await page.locator("#send-code", { hasText: /秒后重发/ }).waitFor();
  assert.equal(
    await page.locator("#send-code").isDisabled(),
    true,
    "resend waits for the countdown",
  );
  assert.equal(page.url(), server.url("/me/email"), "htmx swapped the form in place");
  await shot("email-code-sent");
  const bindCode = await mailWait;
  await page.getByLabel("验证码").fill(bindCode);
  await page.getByRole("button", { name: "确定" }).click();
  await page.getByText("邮箱绑定成功").waitFor();
  await shot("email-bound");

  // Sign out.
  await page.goto(server.url("/me"));
  assert.match(await page.textContent("body") ?? "", new RegExp(EMAIL.replace(".", "\\.")));
  await page.getByRole("button", { name: "退出登录" }).click();
  await page.waitForURL(/\/login$/);

  // 忘记密码: [手机号], [邮箱验证码] with [发送验证码], [新密码], [确认].
  await page.getByRole("link", { name: "忘记密码" }).click();
  await page.waitForURL(/\/password\/forgot$/);
  await page.getByLabel("手机号").fill(PHONE);
  const resetWait = nextCode(smtp, EMAIL);
  await page.getByRole("button", { name: "发送验证码" }).click();
  await page.getByText(/验证码已发送至绑定邮箱 st\*\*\*@qq\.com/).waitFor();
  await shot("forgot-code-sent");
  const resetCode = await resetWait;
  assert.notEqual(resetCode, "", "a code arrived");
  await page.getByLabel("邮箱验证码").fill(resetCode);
  await page.getByLabel("新密码").fill("Fresh5678");
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(/\/login\?reset=1$/);
  await page.getByText("登录密码已重置，请使用新密码登录").waitFor();
  await shot("password-reset");

  // The old password is refused; the new one signs in.
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill("Start1234");
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.getByText(/手机号或登录密码错误/).waitFor();
  assert.equal(await page.getByLabel("手机号").inputValue(), PHONE, "phone kept after an error");
  await page.getByLabel("登录密码").fill("Fresh5678");
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.waitForURL(server.url("/"));
  await page.getByRole("link", { name: "余额" }).waitFor();
  await shot("home-with-new-password");
});

import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, TooManyAttemptsError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import {
  clientIp,
  requireStudent,
  safeNext,
  signIn,
  signInDevice,
  signOut,
} from "../security/mod.ts";
import type { Mailer } from "../mail/mod.ts";
import { RESEND_AFTER_SECONDS } from "./email_codes.ts";
import { findAccount, listSchools } from "./repository.ts";
import {
  bindEmailSchema,
  changePasswordSchema,
  emailCodeSchema,
  forgotCodeSchema,
  forgotSchema,
  loginSchema,
  newPasswordSchema,
  registerSchema,
} from "./schemas.ts";
import {
  authenticate,
  bindEmail,
  changePassword,
  passwordTicket,
  registerFromPage,
  resetPasswordWithCode,
  sendBindEmailCode,
  sendPasswordResetCode,
  setPasswordWithTicket,
} from "./service.ts";
import {
  bindPendingWechat,
  pendingWechat,
  wechatLoginRoutes,
  wechatSignInFirst,
} from "./wechat_routes.ts";

/** 登录, and inside WeChat after the OAuth: keep [绑定此微信] on to bind it. */
const loginForm = loginSchema.extend({ bind_wechat: z.string().max(5).optional() });

/** What the account pages need. */
export interface AccountDeps {
  db: Db;
  config: Config;
  mailer: Mailer;
}

type Input = Record<string, string>;
type C = Context<AppEnv>;

const isHtmx = (c: C) => c.req.header("hx-request") === "true";

/** The form values to show again: never passwords, never the CSRF token. */
function keep(form: Record<string, unknown>): Input {
  const out: Input = {};
  for (const [k, v] of Object.entries(form)) {
    if (typeof v === "string" && k !== "_csrf" && !/password/i.test(k)) out[k] = v.slice(0, 200);
  }
  return out;
}

/**
 * A service error as field errors (and the resend wait for a throttled code). Errors without a
 * field of their own (throttles, mail delivery) are shown at `fallback`.
 */
function asErrors(
  err: unknown,
  fallback = "_form",
): { errors: FieldErrors; status: number; wait: number } {
  if (!(err instanceof DomainError)) throw err;
  const wait = err instanceof TooManyAttemptsError && err.retryAfter <= RESEND_AFTER_SECONDS
    ? err.retryAfter
    : 0;
  return { errors: { [err.field ?? fallback]: err.userMessage }, status: err.status, wait };
}

/** 注册, 登录, 退出, 忘记密码, and 我的 → 绑定邮箱 / 修改登录密码. */
export function accountRoutes(deps: AccountDeps): Hono<AppEnv> {
  const { db, config } = deps;
  const app = new Hono<AppEnv>();

  // ---- 注册
  const showRegister = async (c: C, errors: FieldErrors, input: Input, status = 200) =>
    render(c, "account/register", { errors, input, schools: await listSchools(db) }, {
      status,
      title: "注册",
    });

  app.get("/register", (c) => {
    if (c.get("accountId") !== null) return c.redirect("/", 303);
    return showRegister(c, {}, { next: c.req.query("next") ?? "" });
  });

  app.post(
    "/register",
    zValidator("form", registerSchema, formErrorsHook((c, e, i) => showRegister(c, e, i, 422))),
    async (c) => {
      const form = c.req.valid("form");
      try {
        const id = await registerFromPage(db, {
          phone: form.phone,
          password: form.password,
          schoolId: form.school_id,
          ip: clientIp(c),
        });
        await signIn(c, deps, "student", id);
      } catch (err) {
        const e = asErrors(err);
        return showRegister(
          c,
          e.errors,
          keep({ ...form, school_id: String(form.school_id) }),
          e.status,
        );
      }
      return c.redirect(safeNext(form.next), 303);
    },
  );

  // ---- 登录 / 退出
  const showLogin = async (c: C, errors: FieldErrors, input: Input, status = 200, notice = "") =>
    render(c, "account/login", {
      errors,
      input,
      notice,
      problem: "",
      wechat: await pendingWechat(c, config) ? { bind: input.bind_wechat !== "" } : null,
    }, { status, title: "登录" });

  // 设置新登录密码: after a staff reset, authorised by the signed ticket the form carries.
  const showNewPassword = (
    c: C,
    errors: FieldErrors,
    ticket: string,
    next: string | undefined,
    status = 200,
  ) =>
    render(c, "account/password_new", { errors, ticket, next: next ?? "" }, {
      status,
      title: "设置新登录密码",
    });

  app.get("/login", (c) => {
    const next = c.req.query("next") ?? "";
    if (c.get("accountId") !== null) return c.redirect(safeNext(next), 303);
    // Opened from the 服务号 menu: the silent OAuth first (sign-in without typing).
    const first = wechatSignInFirst(c, config, next);
    if (first) return c.redirect(first, 302);
    const notice = c.req.query("reset") === "1" ? "登录密码已重置，请使用新密码登录" : "";
    return showLogin(c, {}, { next }, 200, notice);
  });

  app.post(
    "/login",
    zValidator(
      "form",
      loginForm,
      // An unticked box is not sent: the form shows it unticked again.
      formErrorsHook((c, e, i) => showLogin(c, e, { ...i, bind_wechat: i.bind_wechat ?? "" }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      const kept = { ...keep(form), bind_wechat: form.bind_wechat ?? "" };
      return await runForm(
        () =>
          authenticate(db, {
            phone: form.phone,
            password: form.password,
            ip: clientIp(c),
            device: signInDevice(c, deps, "student"),
          }),
        (errors, err) => showLogin(c, errors, kept, err.status),
        async (who) => {
          if (who.mustChangePassword) {
            const ticket = await passwordTicket(db, config, who.accountId);
            return showNewPassword(c, {}, ticket, form.next);
          }
          await signIn(c, deps, "student", who.accountId);
          await bindPendingWechat(c, deps, who.accountId, form.bind_wechat === "1");
          return c.redirect(safeNext(form.next), 303);
        },
      );
    },
  );

  app.post(
    "/password/new",
    zValidator(
      "form",
      newPasswordSchema,
      formErrorsHook((c, errors, input) =>
        showNewPassword(c, errors, input.ticket ?? "", input.next, 422)
      ),
    ),
    async (c) => {
      const form = c.req.valid("form");
      return await runForm(
        () =>
          setPasswordWithTicket(db, config, {
            ticket: form.ticket,
            newPassword: form.new_password,
          }),
        (errors, err) => showNewPassword(c, errors, form.ticket, form.next, err.status),
        async (id) => {
          await signIn(c, deps, "student", id);
          return c.redirect(safeNext(form.next), 303);
        },
      );
    },
  );

  app.post("/logout", async (c) => {
    await signOut(c, deps, "student");
    return c.redirect("/login", 303);
  });

  // ---- 忘记密码
  const showForgot = (
    c: C,
    data: { errors: FieldErrors; input: Input; sent?: string; wait?: number },
    status = 200,
  ) =>
    isHtmx(c)
      ? render(c, "account/_forgot_form", data, { layout: null, status: 200 })
      : render(c, "account/forgot", data, { status, title: "找回登录密码" });

  app.get("/password/forgot", (c) => showForgot(c, { errors: {}, input: {} }));

  app.post(
    "/password/forgot/code",
    zValidator(
      "form",
      forgotCodeSchema,
      formErrorsHook((c, errors, input) => showForgot(c, { errors, input }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      const raw = keep(await c.req.parseBody());
      try {
        const { maskedEmail } = await sendPasswordResetCode(deps, {
          phone: form.phone,
          ip: clientIp(c),
          device: signInDevice(c, deps, "student"),
        });
        return showForgot(c, {
          errors: {},
          input: raw,
          sent: `验证码已发送至绑定邮箱 ${maskedEmail}，10分钟内有效`,
          wait: RESEND_AFTER_SECONDS,
        });
      } catch (err) {
        const e = asErrors(err, "code");
        return showForgot(c, { errors: e.errors, input: raw, wait: e.wait }, e.status);
      }
    },
  );

  app.post(
    "/password/forgot",
    zValidator(
      "form",
      forgotSchema,
      formErrorsHook((c, errors, input) => showForgot(c, { errors, input }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      try {
        await resetPasswordWithCode(db, config, {
          phone: form.phone,
          code: form.code,
          newPassword: form.new_password,
          ip: clientIp(c),
          device: signInDevice(c, deps, "student"),
        });
      } catch (err) {
        const e = asErrors(err);
        return showForgot(c, { errors: e.errors, input: keep(form) }, e.status);
      }
      if (c.get("accountId") !== null) await signOut(c, deps, "student");
      return c.redirect("/login?reset=1", 303);
    },
  );

  // ---- 我的 → 绑定邮箱
  app.use("/me/*", requireStudent);
  // ---- 微信登录 (the 服务号's OAuth, 我的 → 微信登录)
  app.route("/", wechatLoginRoutes(deps));

  const showEmail = async (
    c: C,
    data: { errors: FieldErrors; input: Input; sent?: string; wait?: number; done?: boolean },
    status = 200,
  ) => {
    if (isHtmx(c)) return render(c, "account/_email_form", data, { layout: null, status: 200 });
    const account = await findAccount(db, c.get("accountId")!);
    return render(c, "account/email", { ...data, current: account?.email ?? null }, {
      status,
      title: "绑定邮箱",
    });
  };

  app.get(
    "/me/email",
    (c) => showEmail(c, { errors: {}, input: {}, done: c.req.query("done") === "1" }),
  );

  app.post(
    "/me/email/code",
    zValidator(
      "form",
      emailCodeSchema,
      formErrorsHook((c, errors, input) => showEmail(c, { errors, input }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      const raw = keep(await c.req.parseBody());
      try {
        await sendBindEmailCode(deps, {
          accountId: c.get("accountId")!,
          email: form.email,
          ip: clientIp(c),
        });
        return showEmail(c, {
          errors: {},
          input: raw,
          sent: `验证码已发送至 ${form.email}，10分钟内有效`,
          wait: RESEND_AFTER_SECONDS,
        });
      } catch (err) {
        const e = asErrors(err, "email");
        return showEmail(c, { errors: e.errors, input: raw, wait: e.wait }, e.status);
      }
    },
  );

  app.post(
    "/me/email",
    zValidator(
      "form",
      bindEmailSchema,
      formErrorsHook((c, errors, input) => showEmail(c, { errors, input }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      try {
        await bindEmail(db, config, {
          accountId: c.get("accountId")!,
          email: form.email,
          code: form.code,
        });
      } catch (err) {
        const e = asErrors(err);
        return showEmail(c, { errors: e.errors, input: keep(await c.req.parseBody()) }, e.status);
      }
      if (isHtmx(c)) return c.body(null, 204, { "hx-redirect": "/me/email?done=1" });
      return c.redirect("/me/email?done=1", 303);
    },
  );

  // ---- 我的 → 修改登录密码
  const showPassword = (c: C, errors: FieldErrors, status = 200, done = false) =>
    render(c, "account/password", { errors, done }, { status, title: "修改登录密码" });

  app.get("/me/password", (c) => showPassword(c, {}, 200, c.req.query("done") === "1"));

  app.post(
    "/me/password",
    zValidator(
      "form",
      changePasswordSchema,
      formErrorsHook((c, errors) => showPassword(c, errors, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      try {
        await changePassword(db, {
          accountId: c.get("accountId")!,
          oldPassword: form.old_password,
          newPassword: form.new_password,
          keepSessionId: c.get("sessionId"),
        });
      } catch (err) {
        const e = asErrors(err);
        return showPassword(c, e.errors, e.status);
      }
      return c.redirect("/me/password?done=1", 303);
    },
  );

  return app;
}

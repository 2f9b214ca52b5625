import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { clientIp, destroySessionsOf, requireStudent, signOut } from "../security/mod.ts";
import { findBoundCard } from "./repository.ts";
import { bindSchema, lossSchema, passwordSchema, shownAgain } from "./schemas.ts";
import { bindCard } from "./bind.ts";
import { changeCardPassword, liftLoss, reportLoss } from "./holder.ts";

type C = Context<AppEnv>;
type Input = Record<string, string>;

const STATUS_LABELS: Record<string, string> = {
  normal: "正常",
  loss_reported: "已挂失",
  cancelled: "已注销",
};

/** Messages shown after a redirect: a fixed set, so the query cannot inject text. */
const DONE: Record<string, string> = {
  password: "一卡通密码修改成功",
  loss: "挂失成功，请截图记下芯片卡号，解挂时需要输入。",
  unloss: "解挂成功，您的一卡通已恢复正常使用。",
};

/** 我的 → 一卡通安全中心: binding, card password, loss and unloss (mounted at /security). */
export function cardRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  app.use("*", requireStudent);

  const page = async (
    c: C,
    template: string,
    title: string,
    errors: FieldErrors,
    input: Input,
    status = 200,
  ) => {
    const card = await findBoundCard(db, c.get("accountId")!);
    const done = DONE[c.req.query("done") ?? ""];
    return render(c, template, {
      card,
      errors,
      input,
      notice: done,
      statusLabel: STATUS_LABELS[card?.status ?? ""],
    }, {
      status,
      title,
      tab: "me",
    });
  };

  app.get("/", (c) => page(c, "card/security", "一卡通安全中心", {}, {}));

  // ---- 一卡通账号绑定
  const showBind = (c: C, errors: FieldErrors, input: Input, status = 200) =>
    page(c, "card/bind", "一卡通账号绑定", errors, input, status);
  // A refusal that asked for the 身份证, or came with one, keeps asking for it.
  const keptAfterRefusal = (errors: FieldErrors, typed: Input, idGiven: boolean): Input =>
    idGiven || errors.id_number !== undefined ? { ...typed, ask_id: "1" } : typed;
  app.get("/bind", (c) => showBind(c, {}, {}));
  const bindFailed = formErrorsHook((c, errors, input) =>
    showBind(c, errors, shownAgain(input), 422)
  );
  app.post(
    "/bind",
    zValidator("form", bindSchema, bindFailed),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      const accountId = c.get("accountId")!;
      const idGiven = form.idNumber !== undefined;
      return runForm(
        () => bindCard(db, deps, { accountId, ...form, ip: clientIp(c) }),
        (errors, err) => showBind(c, errors, keptAfterRefusal(errors, typed, idGiven), err.status),
        async () => {
          // The manual: 绑定成功后需要重新登录. Every session of the account ends, this one too.
          await destroySessionsOf(db, "student", accountId);
          await signOut(c, deps, "student");
          return render(c, "card/bound", {}, { title: "绑定成功" });
        },
      );
    },
  );

  // ---- 一卡通密码修改
  const showPassword = (c: C, errors: FieldErrors, status = 200) =>
    page(c, "card/password", "一卡通密码修改", errors, {}, status);
  app.get("/password", (c) => showPassword(c, {}));
  app.post(
    "/password",
    zValidator("form", passwordSchema, formErrorsHook((c, errors) => showPassword(c, errors, 422))),
    (c) =>
      runForm(
        () =>
          changeCardPassword(db, deps, { accountId: c.get("accountId")!, ...c.req.valid("form") }),
        (errors, err) => showPassword(c, errors, err.status),
        () => c.redirect("/security?done=password", 303),
      ),
  );

  // ---- 挂失: the chip number is pre-filled with the bound card's chip
  const showLoss = async (c: C, errors: FieldErrors, input: Input | null, status = 200) => {
    const card = await findBoundCard(db, c.get("accountId")!);
    return page(
      c,
      "card/loss",
      "挂失",
      errors,
      input ?? { chip_number: card?.activeChipNumber ?? "" },
      status,
    );
  };
  app.get("/loss", (c) => showLoss(c, {}, null));
  app.post(
    "/loss",
    zValidator(
      "form",
      lossSchema,
      formErrorsHook((c, errors, input) => showLoss(c, errors, shownAgain(input), 422)),
    ),
    (c) => {
      const { typed, ...proof } = c.req.valid("form");
      return runForm(
        () => reportLoss(db, deps, { accountId: c.get("accountId")!, ...proof }),
        (errors, err) => showLoss(c, errors, typed, err.status),
        () => c.redirect("/security/loss?done=loss", 303),
      );
    },
  );

  // ---- 解挂: the holder types the chip number noted at the loss report (or the new chip's)
  const showUnloss = (c: C, errors: FieldErrors, input: Input, status = 200) =>
    page(c, "card/unloss", "解挂", errors, input, status);
  app.get("/unloss", (c) => showUnloss(c, {}, {}));
  app.post(
    "/unloss",
    zValidator(
      "form",
      lossSchema,
      formErrorsHook((c, errors, input) => showUnloss(c, errors, shownAgain(input), 422)),
    ),
    (c) => {
      const { typed, freezePaymentCode: _, ...proof } = c.req.valid("form");
      return runForm(
        () => liftLoss(db, deps, { accountId: c.get("accountId")!, ...proof }),
        (errors, err) => showUnloss(c, errors, typed, err.status),
        () => c.redirect("/security?done=unloss", 303),
      );
    },
  );

  return app;
}

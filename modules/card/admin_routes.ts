import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, type Role, ROLES } from "../staff/mod.ts";
import { findAccount, findSchool, listSchools } from "../account/mod.ts";
import {
  commitImport,
  loadImport,
  MAX_IMPORT_BYTES,
  previewImport,
  TEMPLATE_HEADER,
  TEMPLATE_NOTES,
} from "./import.ts";
import { writeCsv } from "../platform/csv.ts";
import { writeXlsx } from "../platform/sheets.ts";
import { cardPasswordLockedFor } from "./passwords.ts";
import { listCardEvents, listChips, loadCardAccount } from "./repository.ts";
import { importUploadSchema, reissueSchema, searchQuery } from "./schemas.ts";
import { findCardsForStaff } from "./search.ts";
import { listCardTypes } from "./types.ts";
import type { CardSearchRow } from "./repository.ts";
import {
  ALL_ROWS,
  attachment,
  exportLinks,
  exportTable,
  pager,
  type Table,
} from "../platform/listing.ts";
import {
  boundLoginLockedFor,
  changeCardType,
  checkReissue,
  checkTypedStudentNumber,
  reissueCard,
  type ReissuePlan,
  resetCardPassword,
  type StaffActor,
  staffLiftLoss,
  staffReportLoss,
  unbindCard,
  unlockBoundLogin,
  unlockCardPassword,
} from "./counter.ts";

type C = Context<AppEnv>;

/** Who may look cards up and import cardholders; counter operations are the card office's. */
export const CARD_VIEW_ROLES: Role[] = [ROLES.cardOffice, ROLES.sysadmin];
export const CARD_COUNTER_ROLES: Role[] = [ROLES.cardOffice];
/** Who sees a card's money on its page (the wallet's panel, wallet/close_routes.ts). */
export const CARD_MONEY_ROLES: Role[] = [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin];
/** 图文信息中心 helps students who cannot sign in, so it may lift a login lockout too. */
export const LOGIN_UNLOCK_ROLES: Role[] = [ROLES.cardOffice, ROLES.infoCentre];

const ADMIN = { layout: "admin/layout" } as const;

const STATUS_LABELS = { normal: "正常", loss_reported: "已挂失", cancelled: "已注销" } as const;

/** The search's results as a file. */
const SEARCH_TABLE: Table<CardSearchRow> = {
  name: "一卡通查询",
  columns: [
    { header: "学号", value: (r) => r.student_number },
    { header: "姓名", value: (r) => r.name },
    { header: "学校", value: (r) => r.school_name },
    { header: "类型", value: (r) => r.kind === "staff" ? "教职工" : "学生" },
    { header: "卡类别", value: (r) => r.card_type },
    { header: "芯片卡号", value: (r) => r.chip_number ?? "" },
    { header: "状态", value: (r) => STATUS_LABELS[r.status] },
    { header: "绑定", value: (r) => r.account_id ? "已绑定" : "未绑定" },
  ],
};

const importUpload = importUploadSchema(MAX_IMPORT_BYTES);

const EVENT_LABELS: Record<string, string> = {
  created: "开户",
  updated: "资料更新",
  bound: "绑定一信通账号",
  unbound: "解除绑定",
  password_changed: "修改一卡通密码",
  password_reset: "重置一卡通密码",
  password_unlocked: "解除一卡通密码锁定",
  login_unlocked: "解除登录锁定",
  loss_reported: "挂失",
  loss_lifted: "解挂",
  reissued: "补卡",
  closed: "销户",
  closeout_notice: "毕业离校通知",
  type_changed: "更改卡类别",
};

/** Messages after a counter operation: a fixed set, so the query cannot inject text. */
const DONE: Record<string, string> = {
  loss: "已挂失",
  unloss: "已解挂",
  reissue: "补卡完成，旧卡已注销",
  reset: "一卡通密码已重置为默认密码（身份证后6位）",
  unlock: "一卡通密码锁定已解除",
  unlock_login: "登录锁定已解除",
  unbind: "已解除绑定",
  card_type: "卡类别已更改，自下一笔消费起按新卡类别的限额和价格",
};

function cardId(c: C): number {
  const id = Number(c.req.param("id"));
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError("card account");
  return id;
}

function actor(c: C): StaffActor {
  return { staffId: c.get("staff")!.id, ip: clientIp(c) };
}

/** The card office console: search, card detail, counter operations, cardholder import. */
export function cardAdminRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/cards",
    label: "一卡通",
    roles: [...CARD_VIEW_ROLES, ...LOGIN_UNLOCK_ROLES],
    group: "一卡通中心",
    order: 10,
  });

  // ---- search by 学号, name, chip number or phone
  app.get(
    "/",
    requireRole(...CARD_VIEW_ROLES, ...LOGIN_UNLOCK_ROLES),
    zValidator("query", searchQuery),
    async (c) => {
      const { q, page, export: format } = c.req.valid("query");
      if (format) {
        const { rows } = await findCardsForStaff(db, q, ALL_ROWS);
        return exportTable(c, SEARCH_TABLE, rows, format, q);
      }
      const { rows, total, paging } = await findCardsForStaff(db, q, page);
      return render(c, "card/admin_search", {
        q,
        rows,
        pager: pager("/admin/cards", { q }, total, paging),
        exports: exportLinks("/admin/cards", { q }),
      }, { ...ADMIN, title: "一卡通" });
    },
  );

  // ---- card detail
  const showCard = async (
    c: C,
    id: number,
    errors: Record<string, string> = {},
    status = 200,
    reissue: ReissuePlan | null = null,
  ) => {
    const card = await loadCardAccount(db, id);
    if (!card) throw new NotFoundError("card account");
    const school = await findSchool(db, card.school_id);
    if (!school) throw new NotFoundError("school of card account");
    const [chips, events, account, passwordLock, loginLock, types] = await Promise.all([
      listChips(db, id),
      listCardEvents(db, id),
      card.account_id === null ? null : findAccount(db, card.account_id),
      cardPasswordLockedFor(db, id),
      boundLoginLockedFor(db, card.account_id),
      listCardTypes(db),
    ]);
    const staff = c.get("staff")!;
    return render(c, "card/admin_card", {
      card: {
        id: card.id,
        schoolName: school.name,
        studentNumber: card.student_number,
        name: card.name,
        kind: card.kind,
        cardTypeId: Number(card.card_type_id),
        idMasked: card.id_number_masked,
        status: card.status,
        passwordIsDefault: card.password_hash === null,
        paymentCodeFrozen: card.payment_code_frozen,
        lossReportedAt: card.loss_reported_at,
        boundAt: card.bound_at,
      },
      chips,
      events,
      types,
      eventLabels: EVENT_LABELS,
      account,
      passwordLock,
      loginLock,
      reissue,
      canCounter: CARD_COUNTER_ROLES.some((r) => staff.roles.includes(r)),
      canSeeMoney: CARD_MONEY_ROLES.some((r) => staff.roles.includes(r)),
      canUnlockLogin: LOGIN_UNLOCK_ROLES.some((r) => staff.roles.includes(r)),
      notice: DONE[c.req.query("done") ?? ""],
      errors,
    }, { ...ADMIN, status, title: `${card.name} · 一卡通` });
  };

  app.get(
    "/:id{[0-9]+}",
    requireRole(...CARD_VIEW_ROLES, ...LOGIN_UNLOCK_ROLES),
    (c) => showCard(c, cardId(c)),
  );

  /**
   * A counter operation: run it, or show the card again with the reason it was refused (at the
   * operation's own field when it names one: 补卡's chip number, the typed 学号 of 解绑).
   */
  const operation = (
    path: string,
    roles: Role[],
    done: string,
    run: (c: C, id: number) => Promise<void>,
  ) =>
    app.post(`/:id{[0-9]+}/${path}`, requireRole(...roles), (c) => {
      const id = cardId(c);
      return runForm(
        () => run(c, id),
        (errors, err) => showCard(c, id, errors, err.status),
        () => c.redirect(`/admin/cards/${id}?done=${done}`, 303),
      );
    });

  operation("loss", CARD_COUNTER_ROLES, "loss", (c, id) => staffReportLoss(db, actor(c), id));
  operation("unloss", CARD_COUNTER_ROLES, "unloss", (c, id) => staffLiftLoss(db, actor(c), id));
  operation(
    "reset-password",
    CARD_COUNTER_ROLES,
    "reset",
    (c, id) => resetCardPassword(db, actor(c), id),
  );
  operation(
    "unlock",
    CARD_COUNTER_ROLES,
    "unlock",
    (c, id) => unlockCardPassword(db, actor(c), id),
  );
  operation("unbind", CARD_COUNTER_ROLES, "unbind", async (c, id) => {
    await checkTypedStudentNumber(db, id, (await c.req.parseBody()).confirm);
    await unbindCard(db, actor(c), id);
  });
  operation("card-type", CARD_COUNTER_ROLES, "card_type", async (c, id) => {
    const typeId = Number((await c.req.parseBody()).card_type_id);
    await changeCardType(db, actor(c), id, typeId);
  });
  operation(
    "unlock-login",
    LOGIN_UNLOCK_ROLES,
    "unlock_login",
    (c, id) => unlockBoundLogin(db, actor(c), id),
  );

  // 补卡 in two steps: the new chip's number is checked first, then the clerk confirms what the
  // page says will happen (which chip is cancelled for good) and only that is done.
  app.post(
    "/:id{[0-9]+}/reissue",
    requireRole(...CARD_COUNTER_ROLES),
    zValidator(
      "form",
      reissueSchema,
      formErrorsHook((c, errors) => showCard(c, cardId(c), errors, 422)),
    ),
    (c) => {
      const id = cardId(c);
      const form = c.req.valid("form");
      if (!form.confirmed) {
        return runForm(
          () => checkReissue(db, id, form.chip_number),
          (errors, err) => showCard(c, id, errors, err.status),
          (plan) => showCard(c, id, {}, 200, plan),
        );
      }
      return runForm(
        () => reissueCard(db, actor(c), id, form.chip_number),
        (errors, err) => showCard(c, id, errors, err.status),
        () => c.redirect(`/admin/cards/${id}?done=reissue`, 303),
      );
    },
  );

  // ---- cardholder import: upload → preview with per-row errors → commit
  const showUpload = async (c: C, errors: Record<string, string>, status = 200) =>
    render(c, "card/admin_import", {
      errors,
      schools: await listSchools(db),
      maxMb: MAX_IMPORT_BYTES >> 20,
    }, {
      ...ADMIN,
      status,
      title: "导入持卡人",
    });

  app.get("/import", requireRole(...CARD_VIEW_ROLES), (c) => showUpload(c, {}));

  // The sample template: its columns formatted as text, the rules on a second sheet.
  app.get("/import/template.xlsx", requireRole(...CARD_VIEW_ROLES), async (c) => {
    const bytes = await writeXlsx(
      "持卡人",
      TEMPLATE_HEADER.map((header) => ({ header, kind: "text" as const })),
      [],
      { notes: { name: "填写说明", lines: TEMPLATE_NOTES } },
    );
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      "content-disposition": attachment("导入持卡人模板", "xlsx"),
    });
  });

  app.get(
    "/import/template.csv",
    requireRole(...CARD_VIEW_ROLES),
    (c) =>
      c.body(writeCsv([TEMPLATE_HEADER]), 200, {
        "content-type": "text/csv; charset=utf-8",
        "content-disposition": attachment("导入持卡人模板", "csv"),
      }),
  );

  app.post(
    "/import",
    requireRole(...CARD_VIEW_ROLES),
    zValidator("form", importUpload, formErrorsHook((c, errors) => showUpload(c, errors, 422))),
    (c) =>
      runForm(
        () => previewImport(db, deps, { ...c.req.valid("form"), staffId: c.get("staff")!.id }),
        (errors, err) => showUpload(c, errors, err.status),
        (id) => c.redirect(`/admin/cards/import/${id}`, 303),
      ),
  );

  const showImport = async (
    c: C,
    id: number,
    errors: Record<string, string> = {},
    status = 200,
  ) => {
    const imp = await loadImport(db, id);
    if (!imp) throw new NotFoundError("card import");
    return render(c, "card/admin_import_preview", { imp, errors }, {
      ...ADMIN,
      status,
      title: "导入预览",
    });
  };

  app.get(
    "/import/:id{[0-9]+}",
    requireRole(...CARD_VIEW_ROLES),
    (c) => showImport(c, Number(c.req.param("id"))),
  );

  app.post("/import/:id{[0-9]+}/commit", requireRole(...CARD_VIEW_ROLES), async (c) => {
    const id = Number(c.req.param("id"));
    try {
      await commitImport(db, { importId: id, staffId: c.get("staff")!.id, ip: clientIp(c) });
    } catch (err) {
      if (err instanceof DomainError) {
        return showImport(c, id, { _form: err.userMessage }, err.status);
      }
      throw err;
    }
    return c.redirect(`/admin/cards/import/${id}`, 303);
  });

  return app;
}

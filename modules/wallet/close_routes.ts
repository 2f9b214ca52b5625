import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import { runForm } from "../platform/forms.ts";
import type { AppEnv } from "../platform/http.ts";
import {
  ALL_ROWS,
  type Column,
  exportField,
  exportLinks,
  exportTable,
  pageField,
  pager,
} from "../platform/listing.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { requireRole, ROLES } from "../staff/mod.ts";
import { findCardAccount } from "../card/mod.ts";
import { closeCardWithPayout, closingState, payOutClosedCard } from "./close.ts";
import { cardTransfers, counterMoney } from "./counter_money.ts";
import type { HistoryRow } from "./history.ts";
import { KIND_LABELS } from "./history.ts";
import type { TransferKind } from "./tables.ts";

type C = Context<AppEnv>;

const COUNTER = requireRole(ROLES.cardOffice);
/** Who sees a card's money at the counter screen: the card office, finance, the administrator. */
const MONEY = requireRole(ROLES.cardOffice, ROLES.finance, ROLES.sysadmin);

function cardId(c: C): number {
  const id = Number(c.req.param("id"));
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError("card account");
  return id;
}

/** The reason typed at the counter: 2 to 200 characters after trimming, or an error message. */
function readReason(body: Record<string, unknown>): string | { error: string } {
  const raw = typeof body.reason === "string" ? body.reason.trim() : "";
  if (raw.length < 2) return { error: "请填写原因（如：毕业离校）" };
  if (raw.length > 200) return { error: "原因不能超过200字" };
  return raw;
}

/** The 学号 typed to confirm a dangerous operation matches the card's (case and width folded). */
function typedStudentNumber(body: Record<string, unknown>, studentNumber: string): boolean {
  const typed = typeof body.confirm === "string" ? body.confirm : "";
  return typed.normalize("NFKC").trim().toUpperCase() === studentNumber.toUpperCase();
}

/**
 * 销户's form: the reason and the 学号 typed to confirm, or the errors to show with what was typed.
 */
function readCloseForm(
  body: Record<string, unknown>,
  studentNumber: string,
): { reason: string; typed: { reason: string } } | {
  errors: FieldErrors;
  typed: { reason: string };
} {
  const typed = { reason: String(body.reason ?? "").slice(0, 200) };
  const reason = readReason(body);
  if (typeof reason !== "string") return { errors: { reason: reason.error }, typed };
  if (!typedStudentNumber(body, studentNumber)) {
    return { errors: { confirm: "请输入该卡的学号以确认" }, typed };
  }
  return { reason, typed };
}

/** The card of the counter page's path, or 404. */
async function counterCard(c: C, db: Db) {
  const id = cardId(c);
  const card = await findCardAccount(db, id);
  if (!card) throw new NotFoundError("card account");
  return { id, card };
}

const DATE = z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional().catch(undefined);

/** 全部交易's filters: a kind, a range of China days, the page, an export. */
const transfersQuery = z.object({
  kind: z.enum(Object.keys(KIND_LABELS) as [TransferKind, ...TransferKind[]]).optional()
    .catch(undefined),
  from: DATE,
  to: DATE,
  page: pageField,
  export: exportField,
}).transform((q) => ({
  ...q,
  range: {
    from: q.from ? chinaDayRange(q.from)[0] : undefined,
    to: q.to ? chinaDayRange(q.to)[1] : undefined,
  },
}));

const TRANSFER_COLUMNS: Column<HistoryRow>[] = [
  { header: "流水号", value: (r) => r.id, kind: "int" },
  { header: "时间", value: (r) => r.createdAt, kind: "time" },
  { header: "类型", value: (r) => KIND_LABELS[r.kind] ?? r.kind },
  { header: "商户", value: (r) => r.merchantName ?? "" },
  { header: "金额(元)", value: (r) => r.cardDelta, kind: "yuan" },
  { header: "余额(元)", value: (r) => r.balanceAfter, kind: "yuan" },
];

/**
 * The wallet's part of the card office's counter (mounted at "/admin/cards" beside the card
 * office console): the card page's money panel (`/:id/money`, fetched by the page), every
 * transaction of a card (`/:id/transactions`, paged, CSV and Excel), and 销户, where the page
 * shows what will be paid out in cash and the card office confirms with a reason and the 学号.
 */
export function cardClosingRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();

  app.get("/:id{[0-9]+}/money", MONEY, async (c) => {
    const { id, card } = await counterCard(c, db);
    return render(c, "wallet/_counter_money", { card, ...await counterMoney(db, id) }, {
      layout: null,
    });
  });

  app.get(
    "/:id{[0-9]+}/transactions",
    MONEY,
    zValidator("query", transfersQuery),
    async (c) => {
      const { id, card } = await counterCard(c, db);
      const q = c.req.valid("query");
      const filter = { kind: q.kind, ...q.range };
      if (q.export) {
        const { rows } = await cardTransfers(db, id, filter, ALL_ROWS);
        const sheet = { name: `交易记录-${card.studentNumber}`, columns: TRANSFER_COLUMNS };
        return exportTable(c, sheet, rows, q.export, chinaDay());
      }
      const { rows, total, paging } = await cardTransfers(db, id, filter, q.page);
      const path = `/admin/cards/${id}/transactions`;
      const query = { kind: q.kind, from: q.from, to: q.to };
      const pages = { pager: pager(path, query, total, paging), exports: exportLinks(path, query) };
      return render(c, "wallet/admin_transactions", {
        card,
        rows,
        q: query,
        kindLabels: KIND_LABELS,
        ...pages,
      }, { layout: "admin/layout", title: `交易记录 · ${card.name}` });
    },
  );

  const show = async (
    c: C,
    id: number,
    errors: FieldErrors = {},
    input: { reason?: string } = {},
    status = 200,
  ) => {
    const state = await closingState(db, id);
    if (!state) throw new NotFoundError("card account");
    return render(c, "wallet/admin_close", {
      ...state,
      errors,
      input,
      done: c.req.query("done") === "1",
    }, { layout: "admin/layout", status, title: `销户 · ${state.card.name}` });
  };

  app.get("/:id{[0-9]+}/close", COUNTER, (c) => show(c, cardId(c)));

  app.post("/:id{[0-9]+}/close", COUNTER, async (c) => {
    const id = cardId(c);
    const state = await closingState(db, id);
    if (!state) throw new NotFoundError("card account");
    const form = readCloseForm(await c.req.parseBody(), state.card.studentNumber);
    if ("errors" in form) return await show(c, id, form.errors, form.typed, 422);
    const actor = { staffId: c.get("staff")!.id, ip: clientIp(c) };
    return await runForm(
      () =>
        state.card.status === "cancelled"
          ? payOutClosedCard(db, actor, id, form.reason)
          : closeCardWithPayout(db, actor, id, form.reason),
      (errors, err) => show(c, id, errors, form.typed, err.status),
      () => c.redirect(`/admin/cards/${id}/close?done=1`, 303),
    );
  });

  return app;
}

/**
 * 毕业离校's pages (mounted at /admin/closeout): the batches, a new batch (criteria and a 学号
 * list upload), a batch's preview, notice, confirmation, progress (live) and result file.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Config } from "../platform/config.ts";
import { chinaDay } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import {
  ALL_ROWS,
  type Column,
  exportLinks,
  exportTable,
  pager,
  paging,
} from "../platform/listing.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, staffByIds } from "../staff/mod.ts";
import { listSchools } from "../account/mod.ts";
import { listCardTypes } from "../card/mod.ts";
import { buildGateways } from "../topup/mod.ts";
import { batchesQuery, batchQuery, batchSchema, MAX_LIST_BYTES } from "./schemas.ts";
import {
  type Actor,
  type Batch,
  type BatchCard,
  batchCards,
  batchProgress,
  batchStatus,
  cancelBatch,
  CARD_STATES,
  confirmBatch,
  createBatch,
  DISPOSITION_LABELS,
  getBatch,
  listBatches,
  notifyBatch,
  previewBatch,
  retryFailed,
} from "./service.ts";

const ACT = [ROLES.cardOffice] as const;
const VIEW = [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin] as const;
const ADMIN = { layout: "admin/layout" } as const;

const NOTICES: Record<string, string> = {
  created: "已建立批次，请核对预览",
  notified: "已向持卡人发送离校销户通知",
  confirmed: "已确认办理：离校日期起逐张销户，进度见下方",
  cancelled: "已取消批次，尚未办理的卡已移出",
  retried: "已重新排队失败的卡",
};

/** The result file: one row per card. */
const RESULT_COLUMNS: Column<BatchCard>[] = [
  { header: "学号", value: (r) => r.student_number },
  { header: "姓名", value: (r) => r.name },
  { header: "办理状态", value: (r) => CARD_STATES[r.state] },
  {
    header: "结果",
    value: (r) =>
      r.outcome === "closed" ? "已销户" : r.outcome === "already_closed" ? "此前已销户" : "",
  },
  { header: "余额", value: (r) => r.balance, kind: "yuan" },
  { header: "原路退回", value: (r) => r.refunded, kind: "yuan" },
  { header: "退款单号", value: (r) => (r.refund_nos ?? []).join(" ") },
  { header: "余额处理", value: (r) => (r.disposition ? DISPOSITION_LABELS[r.disposition] : "") },
  { header: "待退款/留存", value: (r) => r.left_on_card, kind: "yuan" },
  { header: "欠款", value: (r) => r.debt, kind: "yuan" },
  { header: "完成时间", value: (r) => r.finished_at, kind: "time" },
  { header: "说明", value: (r) => r.last_error },
];

/** 毕业离校 under /admin/closeout. */
export function closeoutRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const gateways = buildGateways(deps);
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/closeout",
    label: "毕业离校",
    roles: [...VIEW],
    group: "一卡通中心",
    order: 40,
  });
  const actor = (c: Context<AppEnv>): Actor => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const canAct = (c: Context<AppEnv>) => c.get("staff")!.roles.includes(ROLES.cardOffice);

  app.get("/", requireRole(...VIEW), async (c) => {
    const q = batchesQuery.parse(c.req.query());
    const listed = await listBatches(db, (t) => paging(q.page, t));
    const rows = [];
    for (const b of listed.rows) {
      const progress = await batchProgress(db, b.id);
      rows.push({ ...b, progress, status: batchStatus(b, progress) });
    }
    return render(c, "closeout/batches", {
      rows,
      canAct: canAct(c),
      pager: pager("/admin/closeout", {}, listed.total, listed.page),
    }, {
      ...ADMIN,
      title: "毕业离校",
    });
  });

  const showNew = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) =>
    render(c, "closeout/new", {
      errors,
      input,
      schools: await listSchools(db),
      cardTypes: await listCardTypes(db),
      today: chinaDay(),
      maxMb: MAX_LIST_BYTES >> 20,
    }, { ...ADMIN, status, title: "新建离校批次" });

  app.get("/new", requireRole(...ACT), (c) => showNew(c, {}, {}));

  app.post(
    "/new",
    requireRole(...ACT),
    zValidator(
      "form",
      batchSchema,
      formErrorsHook((c, errors, input) => showNew(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => createBatch(db, actor(c), form),
        (errors, err) => showNew(c, errors, typed, err.status),
        (id) => c.redirect(`/admin/closeout/${id}?done=created`, 303),
      );
    },
  );

  const loadBatch = async (c: Context<AppEnv>): Promise<Batch> => {
    const id = c.req.param("id") ?? "";
    const b = /^\d{1,15}$/.test(id) ? await getBatch(db, Number(id)) : null;
    if (!b) throw new NotFoundError("closeout batch");
    return b;
  };

  const showBatch = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) => {
    const batch = await loadBatch(c);
    const q = batchQuery.parse(c.req.query());
    const progress = await batchProgress(db, batch.id);
    const staff = await staffByIds(db, [batch.created_by, batch.scheduled_by]);
    const name = (id: number | null) => (id === null ? "" : staff.get(id)?.name ?? `#${id}`);
    const path = `/admin/closeout/${batch.id}`;
    const common = {
      batch,
      progress,
      status: batchStatus(batch, progress),
      names: { createdBy: name(batch.created_by), scheduledBy: name(batch.scheduled_by) },
      stateLabels: CARD_STATES,
      dispositionLabels: DISPOSITION_LABELS,
      notice: NOTICES[c.req.query("done") ?? ""] ?? null,
      errors,
      canAct: canAct(c),
    };
    if (batch.state === "draft") {
      const total = batch.card_count;
      const preview = await previewBatch(db, gateways, batch, paging(q.page, total));
      return render(c, "closeout/batch", {
        ...common,
        preview,
        filter: null,
        cards: [],
        pager: pager(path, {}, preview.totals.cards, paging(q.page, preview.totals.cards)),
        exports: exportLinks(path, {}),
      }, { ...ADMIN, status, title: batch.name });
    }
    const shown = { state: q.state };
    const { rows, total } = await batchCards(db, batch.id, shown, paging(q.page));
    return render(c, "closeout/batch", {
      ...common,
      filter: q.state ?? "",
      cards: rows,
      pager: pager(path, shown, total, paging(q.page, total)),
      exports: exportLinks(path, shown),
    }, { ...ADMIN, status, title: batch.name });
  };

  app.get("/:id", requireRole(...VIEW), async (c) => {
    const q = batchQuery.parse(c.req.query());
    if (q.export) {
      const batch = await loadBatch(c);
      const { rows } = await batchCards(db, batch.id, { state: q.state }, ALL_ROWS);
      return exportTable(
        c,
        { name: `离校结果-${batch.name}`, columns: RESULT_COLUMNS },
        rows,
        q.export,
        chinaDay(),
      );
    }
    return showBatch(c, {});
  });

  // The live progress (htmx polls it while cards are queued).
  app.get("/:id/progress", requireRole(...VIEW), async (c) => {
    const batch = await loadBatch(c);
    const progress = await batchProgress(db, batch.id);
    return render(c, "closeout/_progress", {
      batch,
      progress,
      status: batchStatus(batch, progress),
    }, { layout: null });
  });

  const steps = {
    notify: notifyBatch,
    confirm: (db: Db, a: Actor, id: number) => confirmBatch(db, a, id),
    cancel: cancelBatch,
    retry: retryFailed,
  } as const;
  const done = { notify: "notified", confirm: "confirmed", cancel: "cancelled", retry: "retried" };
  for (
    const [verb, step] of Object.entries(steps) as Array<[keyof typeof steps, typeof steps.notify]>
  ) {
    app.post(`/:id/${verb}`, requireRole(...ACT), async (c) => {
      const batch = await loadBatch(c);
      return runForm(
        () => step(db, actor(c), batch.id),
        (errors, err) => showBatch(c, errors, err.status),
        () => c.redirect(`/admin/closeout/${batch.id}?done=${done[verb]}`, 303),
      );
    });
  }

  return app;
}

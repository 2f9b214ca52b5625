/**
 * 补助发放's pages (mounted at /admin/subsidy): the batches with their report (CSV/Excel), a new
 * batch (a list upload with its sample template, or a card type), a batch's preview with every
 * refused row and why, its approval by a second finance member, withdrawal, and 冲回 per card.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { chinaDay } from "../platform/china_time.ts";
import { writeCsv } from "../platform/csv.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import {
  ALL_ROWS,
  attachment,
  exportLinks,
  exportTable,
  pager,
  paging,
} from "../platform/listing.ts";
import { writeXlsx } from "../platform/sheets.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, staffByIds } from "../staff/mod.ts";
import { listSchools } from "../account/mod.ts";
import { listCardTypes } from "../card/mod.ts";
import { listPurseKinds } from "../wallet/mod.ts";
import { approveBatch } from "./approve.ts";
import { TEMPLATE_COLUMNS, TEMPLATE_NOTES } from "./recipients.ts";
import { batchQuery, batchSchema, listQuery, MAX_LIST_BYTES, reverseSchema } from "./schemas.ts";
import {
  type Actor,
  type Batch,
  BATCH_STATES,
  batchLots,
  batchRows,
  batchTotals,
  createBatch,
  getBatch,
  listBatches,
  reverseRecipient,
  withdrawBatch,
} from "./service.ts";
import { LOT_COLUMNS, periodOf, PLACE_LABELS, REPORT_COLUMNS, ROW_COLUMNS } from "./columns.ts";

const ACT = [ROLES.finance] as const;
const VIEW = [ROLES.finance, ROLES.sysadmin] as const;
const ADMIN = { layout: "admin/layout" } as const;

const NOTICES: Record<string, string> = {
  created: "已编制批次，请核对预览；须由另一位财务人员审核后才会发放",
  approved: "已审核，补助已发放到持卡人的补助钱包",
  partial: "已审核，部分持卡人尚未入账：请再次点击“继续发放”",
  withdrawn: "已撤回批次，未发放任何补助",
  reversed: "已冲回该持卡人的本批补助",
};

/** 补助发放 under /admin/subsidy. */
export function subsidyRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/subsidy",
    label: "补助发放",
    roles: [...VIEW],
    group: "财务处",
    order: 30,
  });
  const actor = (c: Context<AppEnv>): Actor => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const canAct = (c: Context<AppEnv>) => c.get("staff")!.roles.includes(ROLES.finance);

  app.get("/", requireRole(...VIEW), zValidator("query", listQuery), async (c) => {
    const q = c.req.valid("query");
    // The page on screen; an export is the whole report.
    const listed = await listBatches(db, (t) => q.export ? ALL_ROWS : paging(q.page, t));
    const totals = await batchTotals(db, listed.rows.map((b) => b.id));
    const rows = listed.rows.map((b) => ({
      ...b,
      totals: totals.get(b.id)!,
      period: periodOf(b),
      stateLabel: BATCH_STATES[b.state],
    }));
    if (q.export) {
      return exportTable(
        c,
        { name: "补助发放报表", columns: REPORT_COLUMNS },
        rows,
        q.export,
        chinaDay(),
      );
    }
    return render(c, "subsidy/batches", {
      rows,
      canAct: canAct(c),
      exports: exportLinks("/admin/subsidy", {}),
      pager: pager("/admin/subsidy", {}, listed.total, listed.page),
    }, {
      ...ADMIN,
      title: "补助发放",
    });
  });

  app.get("/template.xlsx", requireRole(...VIEW), async (c) => {
    const bytes = await writeXlsx(
      "补助名单",
      [{ header: TEMPLATE_COLUMNS[0], kind: "text" }, {
        header: TEMPLATE_COLUMNS[1],
        kind: "money",
      }],
      [],
      { notes: { name: "填写说明", lines: TEMPLATE_NOTES } },
    );
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
      "content-type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      "content-disposition": attachment("补助发放名单模板", "xlsx"),
    });
  });

  app.get("/template.csv", requireRole(...VIEW), (c) =>
    c.body(writeCsv([TEMPLATE_COLUMNS]), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": attachment("补助发放名单模板", "csv"),
    }));

  const showNew = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) =>
    render(c, "subsidy/new", {
      errors,
      input,
      schools: await listSchools(db),
      purses: (await listPurseKinds(db)).filter((k) => k.lots),
      cardTypes: await listCardTypes(db),
      places: PLACE_LABELS,
      today: chinaDay(),
      maxMb: MAX_LIST_BYTES >> 20,
    }, { ...ADMIN, status, title: "新建补助批次" });

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
        (id) => c.redirect(`/admin/subsidy/${id}?done=created`, 303),
      );
    },
  );

  const loadBatch = async (c: Context<AppEnv>): Promise<Batch> => {
    const id = c.req.param("id") ?? "";
    const b = /^\d{1,15}$/.test(id) ? await getBatch(db, Number(id)) : null;
    if (!b) throw new NotFoundError("subsidy batch");
    return b;
  };

  const showBatch = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string> = {},
    status = 200,
  ) => {
    const batch = await loadBatch(c);
    const q = batchQuery.parse(c.req.query());
    const shown = { rows: q.rows ?? "all" };
    const filter = shown.rows === "all" ? {} : { refused: shown.rows === "refused" };
    const { rows, total } = await batchRows(db, batch.id, filter, paging(q.page));
    const staff = await staffByIds(db, [batch.created_by, batch.approved_by, batch.withdrawn_by]);
    const name = (
      id: number | null,
    ) => (id === null ? "" : staff.get(Number(id))?.name ?? `#${id}`);
    const path = `/admin/subsidy/${batch.id}`;
    return render(c, "subsidy/batch", {
      batch,
      stateLabel: BATCH_STATES[batch.state],
      period: periodOf(batch),
      cardType: (await listCardTypes(db)).find((t) => t.id === Number(batch.card_type_id)) ?? null,
      totals: (await batchTotals(db, [batch.id])).get(batch.id)!,
      names: {
        createdBy: name(batch.created_by),
        approvedBy: name(batch.approved_by),
        withdrawnBy: name(batch.withdrawn_by),
      },
      places: PLACE_LABELS,
      rows,
      filter: shown.rows,
      pager: pager(path, shown, total, paging(q.page, total)),
      exports: exportLinks(path, shown),
      notice: NOTICES[c.req.query("done") ?? ""] ?? null,
      errors,
      input,
      canAct: canAct(c),
      isPreparer: c.get("staff")!.id === Number(batch.created_by),
    }, { ...ADMIN, status, title: batch.name });
  };

  app.get("/:id", requireRole(...VIEW), async (c) => {
    const q = batchQuery.parse(c.req.query());
    if (!q.export) return showBatch(c, {});
    const batch = await loadBatch(c);
    const name = `补助发放-${batch.name}`;
    if (batch.state === "approved" || batch.state === "approving") {
      return exportTable(
        c,
        { name, columns: LOT_COLUMNS },
        await batchLots(db, batch.id),
        q.export,
        chinaDay(),
      );
    }
    const filter = q.rows === "refused"
      ? { refused: true }
      : q.rows === "ok"
      ? { refused: false }
      : {};
    const { rows } = await batchRows(db, batch.id, filter, ALL_ROWS);
    return exportTable(c, { name, columns: ROW_COLUMNS }, rows, q.export, chinaDay());
  });

  app.post("/:id/approve", requireRole(...ACT), async (c) => {
    const batch = await loadBatch(c);
    return runForm(
      () => approveBatch(db, actor(c), batch.id),
      (errors, err) => showBatch(c, errors, {}, err.status),
      (r) =>
        c.redirect(`/admin/subsidy/${batch.id}?done=${r.complete ? "approved" : "partial"}`, 303),
    );
  });

  app.post("/:id/withdraw", requireRole(...ACT), async (c) => {
    const batch = await loadBatch(c);
    return runForm(
      () => withdrawBatch(db, actor(c), batch.id),
      (errors, err) => showBatch(c, errors, {}, err.status),
      () => c.redirect(`/admin/subsidy/${batch.id}?done=withdrawn`, 303),
    );
  });

  app.post(
    "/:id/reverse",
    requireRole(...ACT),
    zValidator(
      "form",
      reverseSchema,
      formErrorsHook((c, errors, input) => showBatch(c, errors, input, 422)),
    ),
    async (c) => {
      const batch = await loadBatch(c);
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => reverseRecipient(db, actor(c), { batchId: batch.id, ...form }),
        (errors, err) => showBatch(c, errors, typed, err.status),
        () => c.redirect(`/admin/subsidy/${batch.id}?done=reversed`, 303),
      );
    },
  );

  return app;
}

import { type Context, Hono } from "hono";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { requireRole, ROLES } from "../staff/mod.ts";
import { closeCardWithPayout, closingState, payOutClosedCard } from "./close.ts";

type C = Context<AppEnv>;

const COUNTER = requireRole(ROLES.cardOffice);

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

/**
 * 销户 at the counter (mounted at "/admin/cards" beside the card office console): the page shows
 * what will be paid out in cash; the card office confirms with a reason.
 */
export function cardClosingRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();

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
    const body = await c.req.parseBody();
    const reason = readReason(body);
    if (typeof reason !== "string") {
      return await show(
        c,
        id,
        { reason: reason.error },
        { reason: String(body.reason ?? "") },
        422,
      );
    }
    const state = await closingState(db, id);
    if (!state) throw new NotFoundError("card account");
    const actor = { staffId: c.get("staff")!.id, ip: clientIp(c) };
    try {
      await (state.card.status === "cancelled"
        ? payOutClosedCard(db, actor, id, reason)
        : closeCardWithPayout(db, actor, id, reason));
    } catch (err) {
      if (err instanceof DomainError && !(err instanceof NotFoundError)) {
        return await show(
          c,
          id,
          { [err.field ?? "_form"]: err.userMessage },
          { reason },
          err.status,
        );
      }
      throw err;
    }
    return c.redirect(`/admin/cards/${id}/close?done=1`, 303);
  });

  return app;
}

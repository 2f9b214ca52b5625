/** Shared set-up for the account module's tests: an app on a fresh database, clients, mail. */
import assert from "node:assert/strict";
import type { Config } from "../platform/config.ts";
import type { DatabaseHandle } from "../platform/database.ts";
import type { TestClient } from "../platform/testing.ts";
import { setupApp, type TestWorld } from "../testkit/mod.ts";
import { type ReceivedMail, startTestSmtpServer, type TestSmtpServer } from "../mail/mod.ts";
import { ensureSchool } from "./mod.ts";

export interface Ctx {
  h: DatabaseHandle;
  config: Config;
  app: TestWorld["app"];
  schoolId: number;
  smtp: TestSmtpServer | null;
  client(ip?: string): TestClient;
  close(): Promise<void>;
}

/** An app on a fresh database with the demo school; `smtp: true` sends mail to a loopback server. */
export async function setup(options: { smtp?: boolean } = {}): Promise<Ctx> {
  const smtp = options.smtp ? await startTestSmtpServer() : null;
  const w = await setupApp({ smtpUrl: smtp?.url ?? null });
  const { h, config, app } = w;
  const school = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
  await ensureSchool(h.db, "昆明测试学院", "KMCS");
  return {
    h,
    config,
    app,
    schoolId: school.id,
    smtp,
    client: w.client,
    async close() {
      await h.close();
      await smtp?.close();
    },
  };
}

/** Registers through the page and returns the signed-in client. */
export async function registered(
  ctx: Ctx,
  phone = "13800000002",
  password = "Abc12345",
  ip?: string,
): Promise<TestClient> {
  const c = ctx.client(ip);
  const res = await c.post("/register", { phone, password, school_id: String(ctx.schoolId) });
  assert.equal(res.status, 303, await res.text());
  return c;
}

/** The 6-digit code in a mail the loopback SMTP server received. */
export function codeIn(mail: ReceivedMail): string {
  const m = /验证码：(\d{6})/.exec(mail.text);
  assert.ok(m, `no code in mail: ${mail.text}`);
  return m[1];
}

/** Text as Eta escapes it into HTML. */
export function escaped(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** The message shown next to a field (`<p class="field-error" id="e-<field>">`), or null. */
export function fieldError(html: string, field: string): string | null {
  return new RegExp(`<p class="field-error" id="e-${field}">([^<]*)</p>`).exec(html)?.[1] ?? null;
}

/** Odd inputs every text field must survive: each gets a Chinese message and no 500. */
export const BAD_TEXT: Record<string, string> = {
  empty: "",
  tooLong: "1".repeat(300),
  markup: "<script>alert(1)</script>",
  sql: "' OR 1=1; DROP TABLE accounts; --",
  fullWidthDigits: "１３８００００００２",
  zeroWidth: "1380000\u200b0002",
};

/** Counts rows of a table. */
export async function count(h: DatabaseHandle, table: "accounts" | "email_codes"): Promise<number> {
  const r = await h.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as("n"))
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

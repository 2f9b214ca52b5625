import type { Kysely } from "kysely";

/**
 * The browser that asked for an email code (SHA-256 of its sign-in device token): a 找回登录密码
 * code is checked only there, so nobody else's requests or wrong tries touch it. Null for 绑定邮箱
 * codes (the signed-in account asked). Frozen.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("email_codes").addColumn("requester", "text").execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("email_codes").dropColumn("requester").execute();
}

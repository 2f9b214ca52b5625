import type { ColumnType, Generated } from "kysely";

export interface SchoolsTable {
  id: Generated<number>;
  name: string;
  /** Short stable code, e.g. "YNCJ". */
  code: string;
  created_at: Generated<Date>;
}

export interface AccountsTable {
  id: Generated<number>;
  /** Mainland mobile number, 11 digits: the sign-in name. */
  phone: string;
  school_id: number;
  password_hash: string;
  /** The bound (verified) email, lower-cased; null until one is bound. */
  email: string | null;
  email_verified_at: Date | null;
  /** Set after staff reset the password: the next sign-in must choose a new one first. */
  must_change_password: Generated<boolean>;
  password_changed_at: Generated<Date>;
  created_at: Generated<Date>;
}

export type EmailCodePurpose = "bind_email" | "reset_password";

export interface EmailCodesTable {
  id: Generated<number>;
  account_id: number;
  purpose: EmailCodePurpose;
  email: string;
  code_hash: string;
  attempts: Generated<number>;
  expires_at: Date;
  used_at: Date | null;
  created_at: Generated<Date>;
  /** SHA-256 of the asking browser's device token (找回登录密码); null for 绑定邮箱. */
  requester: string | null;
}

export type AccountEventKind = "password_changed" | "wechat_bound" | "wechat_unbound";

export interface AccountEventsTable {
  id: Generated<number>;
  account_id: number;
  kind: AccountEventKind;
  actor: "student" | "staff";
  details: ColumnType<unknown, string | null, never>;
  at: Generated<Date>;
  /** The transaction that wrote it (xid8 as text), by the column's default; for feed.ts. */
  xid: ColumnType<string, never, never>;
}

export interface AccountWechatTable {
  account_id: number;
  /** The 服务号 openid of the WeChat user who signs in as this account. */
  openid: string;
  end_on_password_change: Generated<boolean>;
  end_on_loss: Generated<boolean>;
  bound_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    schools: SchoolsTable;
    accounts: AccountsTable;
    email_codes: EmailCodesTable;
    account_events: AccountEventsTable;
    account_wechat: AccountWechatTable;
  }
}

import type { Generated } from "kysely";

export interface MailOutboxTable {
  id: Generated<number>;
  to_address: string;
  subject: string;
  body_text: string;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    mail_outbox: MailOutboxTable;
  }
}

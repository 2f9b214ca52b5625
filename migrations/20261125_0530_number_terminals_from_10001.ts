import { type Kysely, sql } from "kysely";

// Terminal ids travel in every frame and are typed into readers: number them from 10001 like
// device numbers (the create migration's start value was not applied). Existing rows keep theirs.
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table terminals alter column id set start with 10001`.execute(db);
  await sql`select setval(pg_get_serial_sequence('terminals', 'id'), greatest(10000, (select coalesce(max(id), 0) from terminals)))`
    .execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table terminals alter column id set start with 1`.execute(db);
}

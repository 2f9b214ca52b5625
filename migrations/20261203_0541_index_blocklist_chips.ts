import type { Kysely } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // An offline record asks whether its chip was on the blocklist when it was paid: the chip's
  // changes by version, without reading the whole log.
  await db.schema.createIndex("card_blocklist_changes_chip").on("card_blocklist_changes")
    .columns(["chip_number", "version"]).execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("card_blocklist_changes_chip").execute();
}

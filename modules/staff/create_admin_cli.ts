/**
 * `deno task create-admin <username> <name> <password>`: creates a staff member with every role,
 * for the first sign-in of a new deployment.
 */
import { loadConfig } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import { migrateToLatest } from "../platform/migrate.ts";
import { DomainError } from "../platform/errors.ts";
import { ALL_ROLES } from "./roles.ts";
import { createStaff } from "./service.ts";

const [username, name, password] = Deno.args;
if (!username || !name || !password) {
  console.error("Usage: deno task create-admin <username> <name> <password>");
  Deno.exit(2);
}
let handle;
try {
  const config = loadConfig();
  // On the embedded database this refuses while a server holds DATA_DIR: stop it first.
  handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
} catch (err) {
  console.error((err as Error).message);
  Deno.exit(1);
}
try {
  await migrateToLatest(handle.db);
  // The password was typed on a command line (shell history): changed at the first sign-in.
  const id = await createStaff(handle.db, {
    username,
    name,
    password,
    roles: [...ALL_ROLES],
    mustChangePassword: true,
  });
  console.log(
    `Created staff ${username} (id ${id}) with roles ${
      ALL_ROLES.join(", ")
    }; a new password is asked at the first sign-in`,
  );
} catch (err) {
  console.error(err instanceof DomainError ? err.userMessage : (err as Error).message);
  Deno.exitCode = 1;
} finally {
  await handle.close();
}

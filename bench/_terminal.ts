/**
 * Reader-side and card office measurements: readers and cards for the embedded database, the
 * cardholder import, blocklist propagation to connected readers, and the server's memory with
 * idle readers.
 */
import { join } from "node:path";
import { MessageCode, Status } from "../terminal/mod.ts";
import { TerminalClient } from "../terminal/sim/client.ts";
import { setupLoad } from "../terminal/sim/load.ts";
import { createStaff, ROLES } from "../modules/staff/mod.ts";
import { ensureSchool } from "../modules/account/mod.ts";
import { DEMO_SCHOOL } from "../modules/card/mod.ts";
import { loadConfig } from "../modules/platform/mod.ts";
import { delay, OUT, percentile, rssBytes, type Server, startServer } from "./_lib.ts";
import { WebClient } from "./_http.ts";
import {
  createCardholders,
  createReaders,
  idNumberFor,
  openWorld,
  type Secrets,
  signedInStudent,
} from "./_world.ts";

/** Prepares card readers and funded cards in an embedded database before its server starts. */
export async function preparePgliteLoad(
  dataDir: string,
  env: Record<string, string>,
  readers: number,
): Promise<Awaited<ReturnType<typeof setupLoad>>> {
  const world = await openWorld(null, dataDir);
  try {
    return await setupLoad(world.db, loadConfig(env), {
      kind: "card",
      readers,
      cardsPerReader: 4,
      balance: 10_000_000,
    });
  } finally {
    await world.close();
  }
}

/**
 * Imports `count` cardholders as the card office does: a CSV uploaded on the import page, the
 * preview, then the commit. Returns the seconds from upload to committed.
 */
export async function importCardholders(
  server: Server,
  databaseUrl: string,
  secrets: Secrets,
  count: number,
): Promise<{ seconds: number; imported: number }> {
  const world = await openWorld(databaseUrl);
  let schoolId: number;
  const username = `importer${Date.now() % 100000}`;
  try {
    schoolId = (await ensureSchool(world.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code)).id;
    await createStaff(world.db, {
      username,
      name: "导入员",
      password: "Import12345",
      roles: [ROLES.cardOffice, ROLES.sysadmin],
    });
  } finally {
    await world.close();
  }
  void secrets;
  const web = new WebClient(server.url);
  const login = await web.submit("/admin/login", "/admin/login", {
    username,
    password: "Import12345",
  });
  if (login.res.status !== 303) throw new Error(`staff sign-in answered ${login.res.status}`);
  const lines = ["学号,姓名,身份证号,芯片卡号,类型"];
  for (let i = 0; i < count; i++) {
    const n = 500_000 + i;
    lines.push(
      `I${String(n).padStart(9, "0")},导入学生,${idNumberFor(n)},7${
        String(n).padStart(9, "0")
      },学生`,
    );
  }
  const csv = new TextEncoder().encode(lines.join("\r\n") + "\r\n");
  await Deno.writeFile(join(OUT, `import-${count}.csv`), csv);
  const page = await web.get("/admin/cards/import");
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
  if (!token) throw new Error(`no CSRF token on /admin/cards/import (status ${page.res.status})`);
  const start = performance.now();
  const form = new FormData();
  form.set("_csrf", token);
  form.set("school_id", String(schoolId));
  form.set("file", new File([csv], "cardholders.csv", { type: "text/csv" }));
  const upload = await fetch(`${server.url}/admin/cards/import`, {
    method: "POST",
    body: form,
    headers: { cookie: web.cookieHeader },
    redirect: "manual",
  });
  await upload.body?.cancel();
  const previewPath = upload.headers.get("location");
  if (upload.status !== 303 || !previewPath) {
    throw new Error(`import upload answered ${upload.status}`);
  }
  const preview = await web.get(previewPath);
  const commitAction = /action="(\/admin\/cards\/import\/\d+\/commit)"/.exec(preview.text)?.[1];
  if (!commitAction) {
    throw new Error(`no commit form on the import preview: ${preview.text.slice(0, 200)}`);
  }
  const commit = await web.post(commitAction, {}, { csrfFrom: preview.text });
  const seconds = (performance.now() - start) / 1000;
  if (commit.res.status !== 303) {
    throw new Error(`import commit answered ${commit.res.status}: ${commit.text.slice(0, 200)}`);
  }
  const check = await openWorld(databaseUrl);
  try {
    const row = await check.db.selectFrom("card_accounts").select((eb) =>
      eb.fn.countAll<number>().as("n")
    )
      .where("student_number", "like", "I%").executeTakeFirstOrThrow();
    const imported = Number(row.n);
    if (imported !== count) throw new Error(`import committed ${imported} of ${count} cardholders`);
    return { seconds, imported };
  } finally {
    await check.close();
  }
}

/** Connects `count` readers and signs each on, so the server has bound, authenticated connections. */
async function connectReaders(
  server: Server,
  readers: Array<{ terminalId: number; keyHex: string }>,
): Promise<TerminalClient[]> {
  const clients: TerminalClient[] = [];
  // In groups below the server's 50 unauthenticated connections per address (PROTOCOL.md §2.2).
  for (let i = 0; i < readers.length; i += 40) {
    const batch = await Promise.all(
      readers.slice(i, i + 40).map(async (r) => {
        const c = await TerminalClient.connect({
          port: server.terminalPort,
          terminalId: r.terminalId,
          key: r.keyHex,
        });
        const reply = await c.request({ code: MessageCode.SignOn, firmware: "bench" });
        const status = (reply.message as { status: number }).status;
        if (status !== Status.Ok) {
          throw new Error(`sign-on of terminal ${r.terminalId} refused: ${status}`);
        }
        return c;
      }),
    );
    clients.push(...batch);
  }
  return clients;
}

/**
 * A student reports their card lost on the web; measures when each of `count` connected readers
 * receives the BlocklistPush carrying the chip.
 */
export async function blocklistPropagation(
  server: Server,
  databaseUrl: string,
  secrets: Secrets,
  count: number,
): Promise<{ p50Ms: number; p99Ms: number; maxMs: number; reached: number }> {
  const world = await openWorld(databaseUrl);
  let readers;
  let student;
  try {
    readers = await createReaders(world.db, secrets, {
      code: `BENCH-BLOCK-${count}`,
      name: "黑名单测试",
      category: "canteen",
      kind: "canteen_pos",
      count,
    });
    // One student per measurement (each reports a card lost once).
    const [card] = await createCardholders(world.db, secrets, {
      first: 900_000 + count,
      count: 1,
      balance: 0,
      tag: `block-${count}`,
    });
    student = await signedInStudent(
      world.db,
      server.url,
      card,
      `137${String(count).padStart(8, "0")}`,
    );
  } finally {
    await world.close();
  }
  const clients = await connectReaders(server, readers);
  try {
    const arrivals: number[] = [];
    let t0 = 0;
    const chip = student.card.chipNumber;
    const all = Promise.all(clients.map((c) =>
      new Promise<void>((resolve) => {
        const off = c.onPush((r) => {
          const m = r.message as { blocklist?: { added: string[] } };
          if (m.blocklist?.added.includes(chip)) {
            arrivals.push(performance.now() - t0);
            off();
            resolve();
          }
        });
      })
    ));
    const page = await student.web.get("/security/loss");
    t0 = performance.now();
    const res = await student.web.post("/security/loss", {
      chip_number: chip,
      id_number: student.card.idNumber,
      password: student.card.defaultPassword,
    }, { csrfFrom: page.text });
    if (res.res.status >= 400) {
      throw new Error(`loss report answered ${res.res.status}: ${res.text.slice(0, 200)}`);
    }
    await Promise.race([all, delay(10_000)]);
    const sorted = [...arrivals].sort((a, b) => a - b);
    return {
      p50Ms: percentile(sorted, 50),
      // Readers that never got the push count as the slowest (infinitely late).
      p99Ms: sorted.length === count ? percentile(sorted, 99) : Infinity,
      maxMs: sorted.at(-1) ?? NaN,
      reached: sorted.length,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/**
 * Resident memory of a fresh server process with signed-on readers that then stay idle, at each
 * of the growing `counts` (1,000 then 5,000: the readers of the first step stay connected): the
 * server started with `env` (the configuration and database of the measured server, which must
 * be stopped first) so that what earlier sections left in its heap does not count. Returns its
 * RSS before connecting and at each step.
 */
export async function idleReadersMemory(
  env: Record<string, string>,
  databaseUrl: string,
  secrets: Secrets,
  counts: number[],
): Promise<
  { baselineMb: number; steps: Array<{ count: number; rssMb: number; connected: number }> }
> {
  const world = await openWorld(databaseUrl);
  let readers;
  try {
    readers = await createReaders(world.db, secrets, {
      code: "BENCH-IDLE",
      name: "空闲终端",
      category: "canteen",
      kind: "canteen_pos",
      count: Math.max(...counts),
    });
  } finally {
    await world.close();
  }
  const server = await startServer(env, "bench-idle-server");
  const clients: TerminalClient[] = [];
  try {
    // The started server at rest: its start-up work (migrations check, workers' first runs) done.
    await delay(3000);
    const baseline = rssBytes(server.pid) ?? NaN;
    const steps = [];
    for (const count of [...counts].sort((a, b) => a - b)) {
      clients.push(...await connectReaders(server, readers.slice(clients.length, count)));
      // Let the connections settle (buffers, timers); well inside the 180 s idle limit.
      await delay(5000);
      const connected = clients.filter((c) => !c.closed).length;
      steps.push({ count, rssMb: (rssBytes(server.pid) ?? NaN) / 1024 / 1024, connected });
    }
    return { baselineMb: baseline / 1024 / 1024, steps };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.stop("SIGTERM");
  }
}

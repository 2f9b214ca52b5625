/**
 * `deno task sim`: a command-line reader.
 *
 *   deno task sim keys                               list registered readers with their keys
 *   deno task sim --terminal 10001 [--key HEX | --key-version N]
 *                                                    interactive reader; without --key the key is
 *                                                    derived from APP_SECRET (version 1 unless
 *                                                    given), with no database opened
 *   deno task sim load --kind card --readers 64 --seconds 20 [--rate 0] [--json]
 *
 * Common options: --host (127.0.0.1), --port (TERMINAL_PORT or 9000). `keys` and `load` open the
 * server's database (DATABASE_URL / DATA_DIR) like `deno task start` does: on the embedded one
 * they refuse while the server holds DATA_DIR. A reader itself needs only its key.
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../../modules/platform/config.ts";
import { openDatabase } from "../../modules/platform/database.ts";
import { migrateToLatest } from "../../modules/platform/migrate.ts";
import { DataDirBusyError } from "../../modules/platform/data_dir.ts";
import { askHolder, type ReaderKey } from "../../modules/platform/operator.ts";
import { listReaderKeys, terminalKeyHex } from "../../modules/merchant/mod.ts";
import { DEMO_CARDHOLDERS } from "../../modules/card/mod.ts";
import { type Message, MessageCode, messageName, type OfflineRecord, Status } from "../messages.ts";
import { describeStatus, type Received, TerminalClient } from "./client.ts";
import { freshPaymentCode, type LoadKind, runLoad, setupLoad } from "./load.ts";

const { values: opts, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    terminal: { type: "string" },
    key: { type: "string" },
    "key-version": { type: "string", default: "1" },
    sequence: { type: "string" },
    kind: { type: "string", default: "card" },
    readers: { type: "string", default: "8" },
    cards: { type: "string", default: "4" },
    seconds: { type: "string", default: "10" },
    rate: { type: "string", default: "0" },
    amount: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

const port = Number(opts.port ?? Deno.env.get("TERMINAL_PORT") ?? 9000);

async function withDatabase<T>(
  fn: (
    db: Awaited<ReturnType<typeof openDatabase>>["db"],
    config: ReturnType<typeof loadConfig>,
  ) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  const handle = await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: 4,
  }).catch((err) => {
    if (!(err instanceof DataDirBusyError)) throw err;
    throw new Error(
      `${err.message} (readers and their keys: the 终端 page in /admin; a reader connects without the database: deno task sim --terminal <id>)`,
      { cause: err },
    );
  });
  try {
    await migrateToLatest(handle.db);
    return await fn(handle.db, config);
  } finally {
    await handle.close();
  }
}

function show(r: Received): void {
  const m = r.message as Message & { status?: number };
  const { code: _code, ...fields } = m as Message & Record<string, unknown>;
  const status = m.status !== undefined ? `  ${describeStatus(m.status)}` : "";
  console.log(`← ${messageName(r.header.type)} seq=${r.header.sequence}${status}`);
  console.log(`  ${JSON.stringify(fields)}`);
  console.log(`  ${Array.from(r.bytes, (b) => b.toString(16).padStart(2, "0")).join(" ")}`);
}

const HELP = `commands:
  signon                       sign on: server time, merchant, parameters
  hb                           heartbeat (carries blocklist version and offline count)
  pay <chip> <yuan> [password] card payment (offline mode: kept for upload)
  qr <code> <yuan>             payment-code payment
  bal <chip>                   balance inquiry
  shower <chip> <units>        shower start, then end with usage in tariff units
  start <chip> | end <holdId> <units>
  reverse <sequence>           reverse an earlier request of this reader
  sync [version]               blocklist changes since a version
  offline | online             stop talking to the server / upload what was kept
  cards                        demo chip numbers
  quit`;

async function interactive(): Promise<void> {
  const terminalId = Number(opts.terminal);
  if (!Number.isSafeInteger(terminalId) || terminalId <= 0) {
    console.error(
      "Usage: deno task sim --terminal <id> [--key <64 hex>]   (deno task sim keys lists readers)",
    );
    Deno.exit(2);
  }
  const keyVersion = Number(opts["key-version"]);
  if (!Number.isSafeInteger(keyVersion) || keyVersion <= 0) {
    console.error("Cannot read --key-version: a positive whole number");
    Deno.exit(2);
  }
  // What the server derives too (HMAC of APP_SECRET); readers rotated on the 终端 page have a
  // higher version, and a reader that is not registered is refused by the server.
  const key = opts.key ?? terminalKeyHex(loadConfig().appSecret, terminalId, keyVersion);
  const client = await TerminalClient.connect({
    hostname: opts.host,
    port,
    terminalId,
    key,
    sequence: opts.sequence
      ? Number(opts.sequence)
      : (Math.floor(Date.now() / 1000) % 400_000) * 10_000 + 1,
  });
  let blocklistVersion = 0;
  const blocklist = new Set<string>();
  let offline = false;
  let offlineSequence = 0;
  const kept: OfflineRecord[] = [];
  let limits = { payment: 1500, total: 10000, threshold: 2000 };
  client.onPush((r) => {
    console.log("\n(push)");
    show(r);
    const m = r.message as Extract<Message, { code: 0xc1 }>;
    if (m.fromVersion === blocklistVersion) {
      m.blocklist.added.forEach((c) => blocklist.add(c));
      m.blocklist.removed.forEach((c) => blocklist.delete(c));
      blocklistVersion = m.blocklist.version;
    }
  });
  const send = async (m: Message) => {
    const r = await client.request(m);
    show(r);
    return r;
  };
  const yuan = (s: string | undefined) => Math.round(Number(s ?? "0") * 100);

  const signOn = await send({ code: MessageCode.SignOn, firmware: "sim-1.0" });
  if (!signOn.authenticated) {
    console.log(
      `The server did not accept this key for terminal ${terminalId}: is the reader registered, ` +
        "and its key version right? (--key-version N, or --key HEX from the 终端 page)",
    );
  }
  const on = signOn.message;
  if (on.code === MessageCode.SignOnReply) {
    limits = {
      payment: on.offlinePaymentLimit,
      total: on.offlineTotalLimit,
      threshold: on.passwordThreshold,
    };
    const sync = (await send({ code: MessageCode.BlocklistSync, fromVersion: 0 })).message;
    if (sync.code === MessageCode.BlocklistSyncReply) {
      sync.blocklist.added.forEach((c) => blocklist.add(c));
      blocklistVersion = sync.blocklist.version;
    }
  }
  const heartbeat = setInterval(() => {
    if (!offline && !client.closed) {
      client.request({ code: MessageCode.Heartbeat, blocklistVersion, offlineCount: kept.length })
        .catch(() => {});
    }
  }, 30_000);
  console.log(`connected to ${opts.host}:${port} as terminal ${terminalId}; type help`);
  const lines = (async function* () {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of Deno.stdin.readable) {
      buf += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        yield buf.slice(0, nl);
        buf = buf.slice(nl + 1);
      }
    }
  })();
  await Deno.stdout.write(new TextEncoder().encode("> "));
  for await (const line of lines) {
    const [cmd, a, b, c] = line.trim().split(/\s+/);
    try {
      switch (cmd) {
        case "":
          break;
        case "help":
          console.log(HELP);
          break;
        case "cards":
          for (const h of DEMO_CARDHOLDERS) {
            console.log(`${h.chipNumber}  ${h.name}  card password ${h.idNumber.slice(-6)}`);
          }
          break;
        case "signon":
          await send({ code: MessageCode.SignOn, firmware: "sim-1.0" });
          break;
        case "hb":
          await send({ code: MessageCode.Heartbeat, blocklistVersion, offlineCount: kept.length });
          break;
        case "pay": {
          const amount = yuan(b);
          if (offline) {
            const total = kept.reduce((n, r) => n + r.amount, 0);
            if (blocklist.has(a.toUpperCase())) {
              console.log("refused offline: chip on the blocklist");
            } else if (
              amount > limits.payment || total + amount > limits.total || amount > limits.threshold
            ) {
              console.log("refused offline: above the offline limits");
            } else {
              kept.push({
                offlineSequence: ++offlineSequence,
                occurredAt: Math.floor(Date.now() / 1000),
                chip: a,
                amount,
              });
              console.log(`accepted offline (#${offlineSequence}); ${kept.length} kept`);
            }
          } else {
            await send({ code: MessageCode.CardPayment, chip: a, amount, password: c ?? "" });
          }
          break;
        }
        case "qr":
          await send({ code: MessageCode.QrPayment, paymentCode: a, amount: yuan(b) });
          break;
        case "bal":
          await send({ code: MessageCode.BalanceInquiry, chip: a });
          break;
        case "start":
          await send({ code: MessageCode.ShowerStart, chip: a });
          break;
        case "end":
          await send({ code: MessageCode.ShowerEnd, holdId: Number(a), units: Number(b) });
          break;
        case "shower": {
          const s = (await send({ code: MessageCode.ShowerStart, chip: a })).message;
          if (s.code === MessageCode.ShowerStartReply && s.status === Status.Ok) {
            console.log("  …water runs…");
            await send({ code: MessageCode.ShowerEnd, holdId: s.holdId, units: Number(b ?? 10) });
          }
          break;
        }
        case "reverse":
          await send({ code: MessageCode.Reversal, originalSequence: Number(a) });
          break;
        case "sync":
          await send({
            code: MessageCode.BlocklistSync,
            fromVersion: Number(a ?? blocklistVersion),
          });
          break;
        case "offline":
          offline = true;
          console.log("offline: payments are kept on the reader");
          break;
        case "online": {
          offline = false;
          while (kept.length) {
            const r = (await send({
              code: MessageCode.OfflineUploadItemized,
              records: kept.slice(0, 64),
            })).message;
            if (r.code !== MessageCode.OfflineUploadItemizedReply) break;
            for (const x of r.results) {
              console.log(
                x.result === Status.Ok
                  ? `  #${x.offlineSequence} charged ¥${(x.charged / 100).toFixed(2)}`
                  : `  #${x.offlineSequence} not charged: ${describeStatus(x.result)}`,
              );
            }
            const before = kept.length;
            kept.splice(0, kept.length, ...kept.filter((k) => k.offlineSequence > r.ackedSequence));
            if (kept.length === before) break;
          }
          console.log(`online; ${kept.length} offline records left`);
          break;
        }
        case "quit":
        case "exit":
          clearInterval(heartbeat);
          await client.close();
          return;
        default:
          console.log(`unknown command ${cmd}; type help`);
      }
    } catch (err) {
      console.log(`error: ${(err as Error).message}`);
    }
    if (client.closed) {
      console.log("connection closed by the server");
      break;
    }
    await Deno.stdout.write(new TextEncoder().encode("> "));
  }
  clearInterval(heartbeat);
  await client.close();
}

/** The registered readers with their keys: from the database, or from the server holding it. */
async function readerKeys(): Promise<ReaderKey[]> {
  try {
    return await withDatabase((db, config) => listReaderKeys(db, config.appSecret));
  } catch (err) {
    const busy = (err as Error).cause;
    if (!(busy instanceof DataDirBusyError)) throw err;
    return await (await askHolder(busy, "/ops/readers")).json();
  }
}

async function keys(): Promise<void> {
  const list = await readerKeys();
  if (list.length === 0) {
    console.log("No readers registered: sign in to /admin/terminals, or start with SEED_DEMO=1.");
  }
  for (const t of list) {
    console.log(
      `${t.id}  ${t.kind.padEnd(15)} ${t.status.padEnd(8)} ${t.merchantName} / ${t.name}`,
    );
    console.log(`       key ${t.key}`);
  }
  console.log(
    `\nConnect: deno task sim --terminal <id>   (demo chips: ${
      DEMO_CARDHOLDERS.map((h) => h.chipNumber).join(", ")
    })`,
  );
}

async function load(): Promise<void> {
  const kinds = opts.kind.split(",") as LoadKind[];
  const readersPerKind = Number(opts.readers);
  await withDatabase(async (db, config) => {
    const readers = [];
    for (const kind of kinds) {
      if (!["card", "qr", "shower"].includes(kind)) {
        throw new Error(`Cannot load kind ${kind}: card, qr or shower`);
      }
      if (!opts.json) console.error(`preparing ${readersPerKind} ${kind} readers…`);
      readers.push(
        ...await setupLoad(db, config, {
          kind,
          readers: readersPerKind,
          cardsPerReader: Number(opts.cards),
          balance: 10_000_000,
        }),
      );
    }
    const summary = await runLoad({
      hostname: opts.host,
      port,
      readers,
      seconds: Number(opts.seconds),
      rate: Number(opts.rate),
      amount: Number(opts.amount),
      issueCode: (id) => freshPaymentCode(db, id),
      progress: opts.json ? undefined : (line) => console.error(line),
    });
    if (opts.json) {
      console.log(JSON.stringify(summary));
      return;
    }
    for (const s of summary) {
      console.log(
        `${s.kind}: ${s.readers} readers, ${s.ok} ok, ${s.refused} refused, ${s.failed} failed in ${s.seconds}s = ${s.perSecond}/s; ` +
          `latency ms p50 ${s.p50} p95 ${s.p95} p99 ${s.p99} max ${s.max}`,
      );
      if (s.refused) console.log(`  refusals: ${JSON.stringify(s.refusals)}`);
    }
  });
}

if (import.meta.main) {
  try {
    if (opts.help) console.log(HELP);
    else if (positionals[0] === "keys") await keys();
    else if (positionals[0] === "load") await load();
    else await interactive();
  } catch (err) {
    console.error((err as Error).message);
    Deno.exit(1);
  }
}

/** Shared setup of the terminal tests: a database, the listener on an ephemeral port, readers, cards. */
import { createTestDatabase, testConfig } from "../modules/platform/testing.ts";
import type { Config } from "../modules/platform/config.ts";
import type { DatabaseHandle, Db } from "../modules/platform/database.ts";
import { createMerchant, registerTerminal, type TerminalKind } from "../modules/merchant/mod.ts";
import { createCardAccountForTest } from "../modules/card/mod.ts";
import { creditTopUp, getBalance } from "../modules/wallet/mod.ts";
import { startTerminalServer, type TerminalServer, type TerminalServerOptions } from "./mod.ts";
import { keyFromHex, TerminalClient } from "./sim/client.ts";

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = "10X98765432";

/** A valid made-up 身份证 number for test person `n`. */
export function idNumberFor(n: number): string {
  const body = `53010220050315${String(n % 1000).padStart(3, "0")}`;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(body[i]) * ID_WEIGHTS[i];
  return body + ID_CHECK[sum % 11];
}

export interface TestTerminal {
  id: number;
  key: Uint8Array;
  merchantId: number;
}

export interface World {
  h: DatabaseHandle & { url: string | null };
  db: Db;
  config: Config;
  server: TerminalServer;
  terminals: Record<TerminalKind, TestTerminal>;
  /** A card account with a chip and money on it. */
  card(
    input?: { balance?: number; chip?: string; name?: string },
  ): Promise<{ cardAccountId: number; chip: string; password: string }>;
  balance(cardAccountId: number): Promise<number>;
  connect(kind: TerminalKind, options?: { sequence?: number }): Promise<TerminalClient>;
  close(): Promise<void>;
}

let people = 0;

/** A migrated database with a canteen, a supermarket, a shower merchant and one reader of each kind. */
export async function setupWorld(options: Partial<TerminalServerOptions> = {}, existing?: {
  h: DatabaseHandle & { url: string | null };
  terminals: Record<TerminalKind, TestTerminal>;
}): Promise<World> {
  const h = existing?.h ?? await createTestDatabase();
  const db = h.db;
  const config = testConfig();
  let terminals = existing?.terminals;
  if (!terminals) {
    const canteen = await createMerchant(db, {
      code: "T-CANTEEN",
      name: "测试食堂",
      category: "canteen",
    });
    const market = await createMerchant(db, {
      code: "T-MARKET",
      name: "测试超市",
      category: "supermarket",
    });
    const shower = await createMerchant(db, {
      code: "T-SHOWER",
      name: "测试热水",
      category: "shower",
    });
    const reg = async (merchantId: number, kind: TerminalKind) => {
      const r = await registerTerminal(db, config.appSecret, {
        merchantId,
        kind,
        name: `测试${kind}`,
      });
      return { id: r.terminal.id, key: keyFromHex(r.keyHex), merchantId };
    };
    terminals = {
      canteen_pos: await reg(canteen.id, "canteen_pos"),
      supermarket_pos: await reg(market.id, "supermarket_pos"),
      qr_scanner: await reg(canteen.id, "qr_scanner"),
      shower: await reg(shower.id, "shower"),
    };
  }
  const server = startTerminalServer({ db, config }, {
    port: 0,
    hostname: "127.0.0.1",
    ...options,
  });
  const clients: TerminalClient[] = [];
  const t = terminals;
  return {
    h,
    db,
    config,
    server,
    terminals: t,
    async card(input = {}) {
      const n = ++people;
      const chip = input.chip ??
        `C${String(n).padStart(7, "0")}${Math.floor(Math.random() * 1e6)}`.slice(0, 20);
      const idNumber = idNumberFor(n);
      const made = await createCardAccountForTest(db, { config }, {
        studentNumber: `S${Date.now() % 1e9}${n}`.slice(0, 20),
        idNumber,
        chipNumber: chip,
        name: input.name ?? "张三",
      });
      if (input.balance) {
        await creditTopUp(db, {
          cardAccountId: made.cardAccountId,
          amount: input.balance,
          method: "test",
          reference: `test-topup-${crypto.randomUUID()}`,
        });
      }
      return {
        cardAccountId: made.cardAccountId,
        chip: made.chipNumber!,
        password: made.defaultPassword,
      };
    },
    async balance(cardAccountId: number) {
      return (await getBalance(db, cardAccountId)).balance;
    },
    async connect(kind, opts = {}) {
      const c = await TerminalClient.connect({
        port: server.port,
        terminalId: t[kind].id,
        key: t[kind].key,
        sequence: opts.sequence,
      });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) await c.close();
      await server.close();
      if (!existing) await h.close();
    },
  };
}

/** Runs `fn` in a fresh world (database, listener, readers) and closes it afterwards. */
export async function withWorld(
  fn: (w: World) => Promise<void>,
  options: Partial<TerminalServerOptions> = {},
): Promise<void> {
  const w = await setupWorld(options);
  try {
    await fn(w);
  } finally {
    await w.close();
  }
}

/** The status of a reply message (every reply and Error carries one). */
export function status(m: { code: number }): number {
  return (m as unknown as { status: number }).status;
}

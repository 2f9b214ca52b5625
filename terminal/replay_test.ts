/**
 * PROTOCOL.md §6 replayed against a real server: the demo data, the morning's blocklist and holds
 * set up through the modules' own functions, the server's clock fixed at each step, and every
 * answer compared with its vector byte for byte.
 *
 * The test terminals' keys come from APP_SECRET, not the vectors' `00 01 … 1f`: each request is
 * sealed with the real key, and each answer must verify under the real key and, sealed again with
 * the vector's key, be exactly the vector's bytes (header and body as sent; the MAC is then the
 * vector's). The payment code is issued at random: the QrPayment requests carry the code issued,
 * and their replies, which do not contain it, are compared as they stand.
 */
import assert from "node:assert/strict";
import { createTestDatabase, testConfig } from "../modules/platform/testing.ts";
import { seedDemoAccount } from "../modules/account/mod.ts";
import {
  createCardAccountForTest,
  DEMO_CARDHOLDERS,
  seedDemoCards,
  staffLiftLoss,
  staffReportLoss,
} from "../modules/card/mod.ts";
import {
  deriveTerminalKey,
  findTerminal,
  seedDemoMerchants,
  setTerminalStatus,
} from "../modules/merchant/mod.ts";
import { createStaff } from "../modules/staff/mod.ts";
import { creditTopUp, holdFunds, issuePaymentCode, releaseHold } from "../modules/wallet/mod.ts";
import type { Db } from "../modules/platform/database.ts";
import { MAC_SIZE, type Message, MessageCode, Status } from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import { computeMac, macEqual, sealFrame, serializeBody } from "./serializer.ts";
import { startTerminalServer } from "./mod.ts";
import { type Vector, vectorKeys, vectors } from "./_vectors.ts";
import { idNumberFor } from "./_test_support.ts";

/** 1764072000: the stamp of the vectors' requests unless shown otherwise. */
const T = 1764072000;

/** One reader connection as raw frames: answers in order, pushes apart. */
class Wire {
  readonly #answers: RawFrame[] = [];
  readonly #pushes: RawFrame[] = [];
  #wake: (() => void) | null = null;
  readonly #reading: Promise<void>;

  private constructor(readonly conn: Deno.TcpConn) {
    this.#reading = this.#read();
  }

  static async open(port: number): Promise<Wire> {
    return new Wire(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async #read(): Promise<void> {
    const parser = new Parser();
    const buffer = new Uint8Array(16384);
    try {
      for (;;) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        parser.parse(buffer.subarray(0, n), (f) => {
          (f.sequence === 0 ? this.#pushes : this.#answers).push(f);
          this.#wake?.();
        });
      }
    } catch {
      // closed
    }
    this.#wake?.();
  }

  async #next(queue: RawFrame[]): Promise<RawFrame> {
    while (queue.length === 0) await new Promise<void>((resolve) => this.#wake = resolve);
    return queue.shift()!;
  }

  /** Sends one frame and returns the answer to it. */
  async send(bytes: Uint8Array): Promise<RawFrame> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
    return await this.#next(this.#answers);
  }

  push(): Promise<RawFrame> {
    return this.#next(this.#pushes);
  }

  async close(): Promise<void> {
    this.conn.close();
    await this.#reading;
  }
}

function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** A card whose loss is reported and lifted by the card office: one blocklist version each. */
async function blocklistCard(
  db: Db,
  config: ReturnType<typeof testConfig>,
  chip: string,
  n: number,
) {
  const made = await createCardAccountForTest(db, { config }, {
    studentNumber: `20249${String(n).padStart(5, "0")}`,
    idNumber: idNumberFor(900 + n),
    chipNumber: chip,
    name: "赵六",
  });
  return made.cardAccountId;
}

Deno.test("PROTOCOL.md §6 replayed against a server with a fixed clock: every answer is its vector, byte for byte", async () => {
  const all = await vectors();
  const vectorKey = await vectorKeys();
  const vector = (name: string): Vector => {
    const v = all.find((x) => x.name === name);
    assert.ok(v, `no vector "${name}" in PROTOCOL.md §6`);
    return v;
  };
  const h = await createTestDatabase();
  const db = h.db;
  const config = testConfig();
  // The demo school, cardholders (张三 3158642907, 李四 3158642908) and readers 10001–10004.
  await seedDemoAccount(db);
  await seedDemoCards(db, { config });
  const readers = await seedDemoMerchants(db);
  assert.deepEqual(readers, [10001, 10002, 10003, 10004]);
  const [zhang, li] = await Promise.all(
    DEMO_CARDHOLDERS.slice(0, 2).map((c) =>
      db.selectFrom("card_chips").select("card_account_id").where("chip_number", "=", c.chipNumber)
        .executeTakeFirstOrThrow().then((r) => r.card_account_id)
    ),
  );
  await creditTopUp(db, {
    cardAccountId: zhang,
    amount: 5000,
    method: "test",
    reference: "replay-zhang",
  });
  await createCardAccountForTest(db, { config }, {
    studentNumber: "2024090001",
    idNumber: idNumberFor(801),
    chipNumber: "A1B2C3D4",
    name: "王五",
  });
  // The blocklist at version 40 lists 3158600417 and 3158642905; by 42, 3158642911 instead of
  // 3158642905 (HeartbeatReply); from 0, 3158642911 then 3158600417 (BlocklistSyncReply).
  const office = {
    staffId: await createStaff(db, {
      username: "replay-office",
      name: "一卡通中心",
      password: "Office12345",
      roles: ["card_office"],
    }),
  };
  const listed911 = await blocklistCard(db, config, "3158642911", 1);
  const listed417 = await blocklistCard(db, config, "3158600417", 2);
  const listed905 = await blocklistCard(db, config, "3158642905", 3);
  const padding = await blocklistCard(db, config, "3158600002", 4);
  await staffReportLoss(db, office, listed911); // 1
  await staffLiftLoss(db, office, listed911); // 2
  await staffReportLoss(db, office, listed417); // 3
  for (let i = 0; i < 18; i++) { // 4–39
    await staffReportLoss(db, office, padding);
    await staffLiftLoss(db, office, padding);
  }
  await staffReportLoss(db, office, listed905); // 40
  await staffReportLoss(db, office, listed911); // 41
  await staffLiftLoss(db, office, listed905); // 42
  // 76 holds before the morning, so 张三's shower gets hold 77.
  await creditTopUp(db, { cardAccountId: padding, amount: 500, method: "test", reference: "pad" });
  for (let i = 1;; i++) {
    const held = await holdFunds(db, {
      cardAccountId: padding,
      amount: 100,
      merchantId: (await findTerminal(db, 10004))!.merchantId,
      reference: `replay-pad-${i}`,
      expiresAt: new Date(Date.now() + 3_600_000),
    });
    await releaseHold(db, { holdId: held.holdId, reason: "replay" });
    if (held.holdId >= 76) {
      assert.equal(held.holdId, 76);
      break;
    }
  }

  let now = T * 1000;
  const server = startTerminalServer({ db, config }, {
    port: 0,
    hostname: "127.0.0.1",
    registryTtlMs: 0,
    clock: () => now,
  });
  const realKey = new Map<number, Uint8Array>();
  for (const id of [10001, 10004]) {
    realKey.set(
      id,
      deriveTerminalKey(config.appSecret, id, (await findTerminal(db, id))!.keyVersion),
    );
  }
  /** The frame of a request vector, sealed with the real key (its message changed if given). */
  const request = (v: Pick<Vector, "terminalId" | "sequence" | "timestamp" | "message">) =>
    sealFrame(realKey.get(v.terminalId)!, {
      type: v.message.code,
      terminalId: v.terminalId,
      sequence: v.sequence,
      timestamp: v.timestamp,
    }, serializeBody(v.message));
  /** An answer as the vector shows it: verified under the real key, sealed with the vector's. */
  const asVector = (f: RawFrame, sealed: boolean): string => {
    if (!sealed) {
      assert.deepEqual(f.mac, new Uint8Array(MAC_SIZE), "an unsealed Error has a zero MAC");
      return hex(new Uint8Array([...f.signed, ...f.mac]));
    }
    assert.ok(macEqual(computeMac(realKey.get(f.terminalId)!, f.signed), f.mac), "MAC");
    return hex(
      new Uint8Array([...f.signed, ...computeMac(vectorKey.get(f.terminalId)!, f.signed)]),
    );
  };
  const expectAnswer = (f: RawFrame, name: string) => {
    const v = vector(name);
    assert.equal(asVector(f, v.sealed), hex(v.bytes), name);
  };
  /** Sends a request vector at server time `at` and compares the answer with `answer`. */
  const replay = async (wire: Wire, name: string, answer: string, at: number, change = {}) => {
    now = at * 1000;
    const v = vector(name);
    expectAnswer(
      await wire.send(request({ ...v, message: { ...v.message, ...change } as Message })),
      answer,
    );
  };

  const canteen = await Wire.open(server.port);
  const shower = await Wire.open(server.port);
  try {
    // §6.1
    await replay(canteen, "SignOn", "SignOnReply", T + 1);
    await replay(canteen, "Heartbeat", "HeartbeatReply", T + 1);
    await replay(canteen, "BalanceInquiry", "BalanceInquiryReply", T);
    await replay(canteen, "CardPayment", "CardPaymentReply", T);
    await replay(
      canteen,
      "CardPayment (retry of sequence 4 with a new timestamp)",
      "CardPaymentReply",
      T + 7,
    );
    await replay(
      canteen,
      "CardPayment (above the threshold, right password)",
      "CardPaymentReply (insufficient balance)",
      T,
    );
    await replay(canteen, "CardPayment (wrong password)", "CardPaymentReply (wrong password)", T);
    const code = (await issuePaymentCode(db, zhang)).code;
    await replay(canteen, "QrPayment", "QrPaymentReply", T, { paymentCode: code });
    await replay(canteen, "QrPayment (the same code again)", "QrPaymentReply (code used)", T, {
      paymentCode: code,
    });
    await replay(canteen, "Reversal", "ReversalReply", T);
    await replay(canteen, "Reversal (of a reversal)", "ReversalReply (not reversible)", T);
    await replay(canteen, "BlocklistSync", "BlocklistSyncReply", T);
    // 李四 reports the card lost: the connected reader is told at once.
    now = (T + 60) * 1000;
    await staffReportLoss(db, office, li);
    expectAnswer(await canteen.push(), "BlocklistPush");
    await replay(canteen, "OfflineUpload", "OfflineUploadReply", T);
    await replay(
      canteen,
      "OfflineUploadItemized (a 1.1 reader: record 3 again, and record 4)",
      "OfflineUploadItemizedReply",
      T,
    );

    // §6.2
    const heartbeat: Message = {
      code: MessageCode.Heartbeat,
      blocklistVersion: 43,
      offlineCount: 0,
    };
    now = (T + 10) * 1000;
    expectAnswer(
      await canteen.send(
        request({ terminalId: 10001, sequence: 14, timestamp: T - 1000, message: heartbeat }),
      ),
      "Error (stale timestamp, sealed)",
    );
    now = (T + 11) * 1000;
    const badMac = request({ terminalId: 10001, sequence: 15, timestamp: T, message: heartbeat });
    badMac[badMac.length - 1] ^= 1;
    expectAnswer(await canteen.send(badMac), "Error (bad MAC, unsealed)");
    now = (T + 20) * 1000;
    const zhangChip = DEMO_CARDHOLDERS[0].chipNumber;
    expectAnswer(
      await canteen.send(request({
        terminalId: 10001,
        sequence: 4,
        timestamp: T + 20,
        message: { code: MessageCode.BalanceInquiry, chip: zhangChip },
      })),
      "Error (sequence reused: a BalanceInquiry under sequence 4)",
    );
    now = (T + 1) * 1000;
    expectAnswer(
      await canteen.send(request({
        terminalId: 10004,
        sequence: 1,
        timestamp: T,
        message: { code: MessageCode.SignOn, firmware: "SHOWER-1.0" },
      })),
      "Error (wrong terminal: 10004's frame on 10001's connection)",
    );
    now = (T + 21) * 1000;
    for (let i = 0; i < 10; i++) {
      const walked = await canteen.send(request({
        terminalId: 10001,
        sequence: 16 + i,
        timestamp: T + 21,
        message: { code: MessageCode.BalanceInquiry, chip: String(3158642909 + i) },
      }));
      const m = parseBody(walked.type, walked.body) as { status: number };
      assert.notEqual(m.status, Status.RateLimited, `sequence ${16 + i}`);
    }
    await replay(
      canteen,
      "BalanceInquiry (the eleventh at once)",
      "BalanceInquiryReply (rate limited)",
      T + 21,
    );
    await setTerminalStatus(db, 10001, "disabled");
    now = (T + 120) * 1000;
    expectAnswer(
      await canteen.send(
        request({ terminalId: 10001, sequence: 27, timestamp: T + 120, message: heartbeat }),
      ),
      "Error (terminal disabled)",
    );

    // §6.3
    await replay(shower, "ShowerStart", "ShowerStartReply", T + 30);
    await replay(
      shower,
      "BalanceInquiry (at the shower, hold running)",
      "BalanceInquiryReply (hold running)",
      T + 31,
    );
    await replay(shower, "ShowerEnd", "ShowerEndReply", T + 400);
    await replay(
      shower,
      "ShowerEnd (the same hold again, new sequence)",
      "ShowerEndReply (hold not found)",
      T + 401,
    );
    await replay(
      shower,
      "ShowerStart (李四's card, reported lost)",
      "ShowerStartReply (card loss reported)",
      T + 500,
    );
  } finally {
    await canteen.close();
    await shower.close();
    await server.close();
    await h.close();
  }
});

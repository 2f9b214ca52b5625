/**
 * Protocol fuzzing against a live server: valid frames of a real reader, mutated (bit flips,
 * truncation, wrong lengths, foreign terminal ids, random codes), and plain random bytes, sent in
 * short bursts over fresh connections. The server closes a connection after 3 refused frames or
 * one unframeable one (PROTOCOL.md §2.1), so each burst is at most 3 frames.
 */
import {
  encodeFrame,
  HEADER_SIZE,
  keyFromHex,
  type Message,
  MessageCode,
} from "../terminal/mod.ts";
import { delay } from "./_lib.ts";

/** A small deterministic generator, so a failing run can be repeated with its seed. */
export class Random {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    // xorshift32
    let x = this.#s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.#s = x;
    return x / 0x1_0000_0000;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** Counts of what the fuzzer sent. */
export interface FuzzStats {
  frames: number;
  connections: number;
  connectFailures: number;
}

/** A fuzzing target: a reader's identity whose valid frames get mutated. */
export interface FuzzTarget {
  terminalId: number;
  keyHex: string;
  chip: string;
}

function validFrame(
  target: FuzzTarget,
  key: Uint8Array,
  rnd: Random,
  sequence: number,
): Uint8Array {
  const messages: Message[] = [
    { code: MessageCode.CardPayment, chip: target.chip, amount: 1 + rnd.int(5000), password: "" },
    { code: MessageCode.BalanceInquiry, chip: target.chip },
    { code: MessageCode.Heartbeat, blocklistVersion: rnd.int(10), offlineCount: 0 },
    { code: MessageCode.Reversal, originalSequence: rnd.int(1000) },
    {
      code: MessageCode.OfflineUpload,
      records: [{
        offlineSequence: 1 + rnd.int(5),
        occurredAt: Math.floor(Date.now() / 1000),
        chip: target.chip,
        amount: 100,
      }],
    },
  ];
  const m = messages[rnd.int(messages.length)];
  return encodeFrame(key, {
    terminalId: target.terminalId,
    sequence,
    timestamp: Math.floor(Date.now() / 1000),
  }, m);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * One mutated frame: never the valid frame itself. A mutation can land back on the original (two
 * bit flips on the same bit, a "random" message code equal to the real one), and that frame is a
 * correctly authenticated request that would really pay; such draws are thrown away.
 */
export function mutate(frame: Uint8Array, rnd: Random): Uint8Array {
  for (;;) {
    const m = mutateOnce(frame, rnd);
    if (!sameBytes(m, frame)) return m;
  }
}

function mutateOnce(frame: Uint8Array, rnd: Random): Uint8Array {
  const f = frame.slice();
  switch (rnd.int(8)) {
    case 0: { // flip 1–4 bits anywhere (the MAC then fails, or the framing does)
      for (let i = 0, n = 1 + rnd.int(4); i < n; i++) f[rnd.int(f.length)] ^= 1 << rnd.int(8);
      return f;
    }
    case 1: // truncated: the server waits for the rest, then times the frame out
      return f.subarray(0, rnd.int(f.length));
    case 2: { // body length lies
      const view = new DataView(f.buffer);
      view.setUint16(16, rnd.int(2) ? rnd.int(0x10000) : view.getUint16(16) + 1 + rnd.int(8));
      return f;
    }
    case 3: { // another terminal id (unknown, or someone else's) with this MAC
      const view = new DataView(f.buffer);
      const own = view.getUint32(4);
      const other = rnd.int(2) ? rnd.int(0x1_0000_0000) : 1 + rnd.int(50);
      view.setUint32(4, other === own ? own + 1 : other);
      return f;
    }
    case 4: // random message code
      f[3] = rnd.int(256);
      return f;
    case 5: { // MAC replaced by random or zero bytes
      f.set(rnd.int(2) ? rnd.bytes(16) : new Uint8Array(16), f.length - 16);
      return f;
    }
    case 6: { // random bytes spliced into the body
      const out = new Uint8Array(f.length + 1 + rnd.int(32));
      out.set(f.subarray(0, HEADER_SIZE));
      out.set(rnd.bytes(out.length - f.length + 1), HEADER_SIZE);
      out.set(f.subarray(HEADER_SIZE + 1), out.length - (f.length - HEADER_SIZE - 1));
      return out;
    }
    default: // garbage
      return rnd.bytes(1 + rnd.int(200));
  }
}

/**
 * Sends mutated and random frames until `frames` were sent or `until` (epoch ms), over
 * `parallel` connections at a time. Never sends a frame that would verify.
 */
export async function fuzz(
  port: number,
  target: FuzzTarget,
  options: { frames: number; until: number; parallel: number; seed: number },
): Promise<FuzzStats> {
  const stats: FuzzStats = { frames: 0, connections: 0, connectFailures: 0 };
  const key = keyFromHex(target.keyHex);
  const worker = async (w: number) => {
    const rnd = new Random(options.seed + w * 7919);
    let sequence = 1;
    while (stats.frames < options.frames && Date.now() < options.until) {
      let conn: Deno.TcpConn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        stats.connectFailures++;
        await delay(100);
        continue;
      }
      stats.connections++;
      const reading = (async () => {
        const buf = new Uint8Array(4096);
        try {
          while ((await conn.read(buf)) !== null) { /* replies and errors: drained */ }
        } catch { /* reset by the server */ }
      })();
      try {
        for (let i = 0; i < 3 && stats.frames < options.frames; i++) {
          const frame = mutate(validFrame(target, key, rnd, sequence++), rnd);
          await conn.write(frame);
          stats.frames++;
        }
      } catch { /* the server closed the connection first: expected */ }
      try {
        conn.close();
      } catch { /* already closed */ }
      await reading;
    }
  };
  await Promise.all(Array.from({ length: options.parallel }, (_, i) => worker(i)));
  return stats;
}

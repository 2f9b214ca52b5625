/**
 * Protocol fuzzing against a live server: valid frames of a real reader, mutated (bit flips,
 * truncation, wrong lengths, foreign terminal ids, random codes, bodies re-signed with the real
 * key so they reach the parser and the service), and plain random bytes. Framed mutations are
 * pipelined over long-lived connections; stream-breaking ones go in short bursts over fresh
 * connections, since the server closes a connection after 3 refused frames in a row or one
 * unframeable one (PROTOCOL.md §2.1).
 */
import {
  computeMac,
  encodeFrame,
  FrameError,
  HEADER_SIZE,
  keyFromHex,
  MAC_SIZE,
  MAX_BODY_SIZE,
  type Message,
  MessageCode,
  messageName,
  type OfflineRecord,
  parseBody,
  Parser,
  type RawFrame,
  sealFrame,
  serializeBody,
  statusName,
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

/** Counts of what the fuzzer sent and got back. */
export interface FuzzStats {
  /** Mutated and random frames sent (the fuzz count). */
  frames: number;
  /** Of those: correctly signed with the reader's key, body or code mutated (past the MAC check). */
  signed: number;
  /** Of the signed ones: the mutated body still parsed as a harmless request and was served. */
  signedServed: number;
  /** Valid frames interleaved (sign-on, heartbeat, balance inquiry): they keep a connection open. */
  valid: number;
  /** Replies read from the server. */
  replies: number;
  connections: number;
  connectFailures: number;
  /** Long-lived connections the server closed while the fuzzer expected them to stay open. */
  unexpectedCloses: number;
  /** Mutated bodies on which the codec threw something other than a FrameError (hex, first few). */
  codecCrashes: string[];
  /**
   * Well-sealed offline records the server must acknowledge and never charge (over the limits
   * SignOn announced, out of time, unknown, lost, replaced or closed cards), sent as served uploads.
   */
  offlineRecords: number;
  /** Of those, answered with a result that is not Ok (what the server must answer). */
  offlineRefused: number;
  /** Of those, reported charged: each one is a failure. */
  offlineCharged: number;
  /**
   * Well-sealed uploads answered with an Error (ServerBusy, MalformedBody, …) instead of their
   * reply, and when (epoch ms): each one outside an outage is a failure. A record's content never
   * refuses an upload (PROTOCOL.md §4.11), and an upload the server keeps failing is a reader
   * queue that is never acknowledged. The fuzzer resends the same records, as a reader would.
   * Only Errors sealed with the reader's key count: a mutated frame whose sequence bits landed on
   * the upload's number is answered with an unsealed BadMac.
   */
  offlineUploadErrors: Array<{ sequence: number; status: string; at: number }>;
}

/**
 * A fuzzing target: readers' identities whose valid frames get mutated. A terminal is served on
 * one connection (PROTOCOL.md §1), so each long-lived connection is a reader of its own:
 * connection `w` fuzzes as `readers[w % readers.length]`.
 */
export interface FuzzTarget {
  readers: Array<{ terminalId: number; keyHex: string }>;
  chip: string;
  /**
   * Chips whose offline payments the server must refuse when paid after `refusedSince` (epoch
   * seconds): a card reported lost, a chip replaced by a reissue, a closed card account.
   */
  refusedChips?: string[];
  refusedSince?: number;
}

/** What a fuzzing reader learnt at SignOn: its offline limits (PROTOCOL.md §4.1). */
interface OfflineLimits {
  offlinePaymentLimit: number;
  passwordThreshold: number;
}

/**
 * An offline record the server must acknowledge and never charge (PROTOCOL.md §4.11), whatever
 * else the reader did: above the per-record limit or the password threshold SignOn announced (up to
 * absurd amounts), zero, dated a day or more after its upload, older than a year, of an unknown
 * chip, or of a chip the target says is refused.
 */
export function refusedOfflineRecord(
  rnd: Random,
  target: FuzzTarget,
  limits: OfflineLimits,
  offlineSequence: number,
): OfflineRecord {
  const now = Math.floor(Date.now() / 1000);
  const ok = { offlineSequence, occurredAt: now - rnd.int(60), chip: target.chip, amount: 100 };
  const above = Math.min(limits.offlinePaymentLimit, limits.passwordThreshold) + 1;
  const refused = target.refusedChips ?? [];
  switch (rnd.int(refused.length ? 8 : 7)) {
    case 0:
      return { ...ok, amount: above + rnd.int(0xffff_ffff - above) };
    case 1:
      return { ...ok, amount: [500_000, 200_000_000, 0xffff_ffff][rnd.int(3)] };
    case 2:
      return { ...ok, amount: 0 };
    case 3: // from a day ahead to the end of u32 time (2106)
      return { ...ok, occurredAt: now + 86_400 + rnd.int(0xffff_ffff - now - 86_400) };
    case 4: // more than a year old, down to 1970
      return { ...ok, occurredAt: rnd.int(now - 400 * 86_400) };
    case 5:
      return { ...ok, chip: `7${String(rnd.int(1e9)).padStart(9, "0")}` };
    case 6: // a chip field no card carries (offline records read any str8)
      return { ...ok, chip: BAD_CHIPS[rnd.int(BAD_CHIPS.length)] };
    default:
      return {
        ...ok,
        // Now: usually after the reader acknowledged the blocklist listing the chip.
        occurredAt: Math.max(now, (target.refusedSince ?? 0) + 2),
        chip: refused[rnd.int(refused.length)],
        amount: 1 + rnd.int(Math.max(1, above - 1)),
      };
  }
}

/** One reader of a target, as the frame builders see it. */
interface FuzzReader {
  terminalId: number;
  chip: string;
}

/** Chip fields a reader must never send (PROTOCOL.md §2): each is a MalformedBody. */
const BAD_CHIPS = ["3158\u00006429", "a1b2c3d4", "A1B2-C3D4", "A1B", "A".repeat(21), "张三01234"];

function validMessage(target: FuzzReader, rnd: Random): Message {
  const messages: Message[] = [
    { code: MessageCode.CardPayment, chip: target.chip, amount: 1 + rnd.int(5000), password: "" },
    { code: MessageCode.BalanceInquiry, chip: target.chip },
    { code: MessageCode.Heartbeat, blocklistVersion: rnd.int(10), offlineCount: 0 },
    { code: MessageCode.Reversal, originalSequence: rnd.int(1000) },
    { code: MessageCode.SignOn, firmware: "fuzz-1.0" },
    { code: MessageCode.BlocklistSync, fromVersion: rnd.int(10) },
    {
      code: MessageCode.QrPayment,
      paymentCode: "28" + String(rnd.int(1e9)).padStart(16, "0"),
      amount: 1 + rnd.int(5000),
    },
    { code: MessageCode.ShowerStart, chip: target.chip },
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
  return messages[rnd.int(messages.length)];
}

function validFrame(
  target: FuzzReader,
  key: Uint8Array,
  rnd: Random,
  sequence: number,
): Uint8Array {
  return encodeFrame(key, {
    terminalId: target.terminalId,
    sequence,
    timestamp: Math.floor(Date.now() / 1000),
  }, validMessage(target, rnd));
}

/** Requests that move no money whatever their fields say: a signed one may be served. */
const HARMLESS: ReadonlySet<number> = new Set([
  MessageCode.SignOn,
  MessageCode.Heartbeat,
  MessageCode.BalanceInquiry,
  MessageCode.BlocklistSync,
]);

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

/** What one framed mutation is and what the server will make of it. */
interface Framed {
  bytes: Uint8Array;
  /** Correctly signed with the reader's key. */
  signed: boolean;
  /** The server will serve it (a harmless request): it counts as good, not as a refused frame. */
  served: boolean;
}

/** The blocklist version a server frame carries (sign-on reply, heartbeat reply, push), or -1. */
function versionIn(f: RawFrame): number {
  if (
    f.type !== MessageCode.SignOnReply && f.type !== MessageCode.HeartbeatReply &&
    f.type !== MessageCode.BlocklistPush
  ) return -1;
  try {
    const m = parseBody(f.type, f.body) as
      | { blocklistVersion: number }
      | { blocklist: { version: number; complete: boolean } };
    if ("blocklistVersion" in m) return m.blocklistVersion;
    return m.blocklist.complete ? m.blocklist.version : -1;
  } catch {
    return -1;
  }
}

/**
 * A mutation that keeps the frame framed (magic, version and body length consistent), so the
 * frames after it on the same connection are still read: half are unsigned (header fields, body
 * or MAC changed; the MAC check refuses them), half are signed with the reader's real key after
 * the body or the code was changed, so they reach the body parser and, when they still parse as
 * a request that moves no money, the service. A signed mutation that still parses as a money
 * request is never sent signed: its MAC is broken instead (the soak checks no money moved) —
 * except under a sequence number the rules of PROTOCOL.md §3 refuse: 0, or one below `floor` (a
 * number this connection's reader used before, never recorded), which must be `SequenceReused`.
 */
export function mutateFramed(
  target: FuzzReader,
  key: Uint8Array,
  rnd: Random,
  sequence: number,
  crashes: string[],
  floor = 0,
): Framed {
  const timestamp = Math.floor(Date.now() / 1000);
  const m = validMessage(target, rnd);
  const header = { terminalId: target.terminalId, sequence, timestamp };
  if (rnd.int(2) === 0) {
    const f = encodeFrame(key, header, m);
    const view = new DataView(f.buffer, f.byteOffset, f.byteLength);
    switch (rnd.int(6)) {
      case 0: // flip bits in the header fields after the length-independent part, or the body
        for (let i = 0, n = 1 + rnd.int(4); i < n; i++) {
          const at = 3 + rnd.int(f.length - 3 - MAC_SIZE);
          if (at === 16 || at === 17) continue; // the body length keeps the stream framed
          f[at] ^= 1 << rnd.int(8);
        }
        break;
      case 1: // another terminal id (unknown, or someone else's) with this MAC
        view.setUint32(4, rnd.int(2) ? rnd.int(0x1_0000_0000) : 1 + rnd.int(50));
        break;
      case 2: // random message code
        f[3] = rnd.int(256);
        break;
      case 3: // MAC replaced by random or zero bytes
        f.set(rnd.int(2) ? rnd.bytes(MAC_SIZE) : new Uint8Array(MAC_SIZE), f.length - MAC_SIZE);
        break;
      case 4: // one MAC bit
        f[f.length - 1 - rnd.int(MAC_SIZE)] ^= 1 << rnd.int(8);
        break;
      default: // sequence and timestamp scrambled
        view.setUint32(8, rnd.int(0x1_0000_0000));
        view.setUint32(12, rnd.int(0x1_0000_0000));
    }
    if (sameBytes(f, encodeFrame(key, header, m))) f[f.length - 1] ^= 1; // never the valid frame
    return { bytes: f, signed: false, served: false };
  }
  // Signed: the body (and sometimes the code or the timestamp) mutated, then sealed properly.
  let body = serializeBody(m);
  let code: number = m.code;
  let ts = timestamp;
  let seq = sequence;
  let refusedBySequence = false;
  switch (rnd.int(9)) {
    case 0: { // bit flips
      body = body.slice();
      for (let i = 0, n = 1 + rnd.int(4); i < n && body.length; i++) {
        body[rnd.int(body.length)] ^= 1 << rnd.int(8);
      }
      break;
    }
    case 1: // truncated body
      body = body.slice(0, rnd.int(body.length + 1));
      break;
    case 2: { // extra bytes after the body
      const out = new Uint8Array(body.length + 1 + rnd.int(64));
      out.set(body);
      out.set(rnd.bytes(out.length - body.length), body.length);
      body = out;
      break;
    }
    case 3: // random body of any length up to the limit
      body = rnd.bytes(rnd.int(4) === 0 ? rnd.int(MAX_BODY_SIZE + 1) : rnd.int(80));
      break;
    case 4: { // one byte set to an edge value (lengths and counts read from the body)
      body = body.slice();
      if (body.length) body[rnd.int(body.length)] = [0, 0xff, 0x7f, 0x80, 0x40][rnd.int(5)];
      break;
    }
    case 5: // another code with this body
      code = rnd.int(3) === 0 ? rnd.int(256) : [...HARMLESS][rnd.int(HARMLESS.size)];
      break;
    case 6: { // a chip outside 0-9A-Z (MalformedBody), in a request that carries one
      const chip = BAD_CHIPS[rnd.int(BAD_CHIPS.length)];
      const carrier: Message =
        m.code === MessageCode.CardPayment || m.code === MessageCode.ShowerStart
          ? { ...m, chip }
          : { code: MessageCode.BalanceInquiry, chip };
      body = serializeBody(carrier);
      code = carrier.code;
      break;
    }
    case 7: // the message untouched, under sequence 0 or a lower number never recorded
      seq = floor > 1 && rnd.int(2) ? floor - 1 - rnd.int(Math.min(floor - 1, 1000)) : 0;
      refusedBySequence = true;
      break;
    default: // a timestamp outside the window
      ts = timestamp + (rnd.int(2) ? 1 : -1) * (3600 + rnd.int(1_000_000));
  }
  let parsed: Message | null = null;
  const known = messageName(code) !== undefined && code < MessageCode.Error;
  if (known) {
    try {
      parsed = parseBody(code, body);
    } catch (err) {
      if (!(err instanceof FrameError) && crashes.length < 5) {
        crashes.push(`code ${code} body ${toHex(body.subarray(0, 64))}: ${(err as Error).message}`);
      }
    }
  }
  const fresh = Math.abs(ts - Date.now() / 1000) < 60;
  if (parsed && fresh && !HARMLESS.has(code) && !refusedBySequence) {
    // A well-formed money request under a good MAC would really be served: break its MAC.
    const f = sealFrame(
      key,
      { type: code, terminalId: target.terminalId, sequence: seq, timestamp: ts },
      body,
    );
    f[f.length - 1] ^= 1;
    return { bytes: f, signed: false, served: false };
  }
  const f = sealFrame(
    key,
    { type: code, terminalId: target.terminalId, sequence: seq, timestamp: ts },
    body,
  );
  // Under a refused sequence number even a harmless request is answered SequenceReused.
  return { bytes: f, signed: true, served: parsed !== null && fresh && !refusedBySequence };
}

/** The offline limits in a SignOnReply, or null. */
function signOnLimits(f: RawFrame): OfflineLimits | null {
  try {
    const m = parseBody(f.type, f.body) as Extract<Message, { code: 0x81 }>;
    return { offlinePaymentLimit: m.offlinePaymentLimit, passwordThreshold: m.passwordThreshold };
  } catch {
    return null;
  }
}

/** Counts an upload reply's records as refused or charged; returns the next offline sequence. */
function tallyOffline(f: RawFrame, stats: FuzzStats): number | null {
  let m: Message;
  try {
    m = parseBody(f.type, f.body);
  } catch {
    return null;
  }
  if (m.code === MessageCode.OfflineUploadReply) {
    stats.offlineCharged += m.applied;
    return m.ackedSequence + 1;
  }
  if (m.code !== MessageCode.OfflineUploadItemizedReply) return null;
  for (const r of m.results) {
    if (r.charged > 0 || r.result === 0) stats.offlineCharged++;
    else stats.offlineRefused++;
  }
  return m.ackedSequence + 1;
}

/** The status name of an Error frame. */
function errorStatus(f: RawFrame): string {
  try {
    const m = parseBody(f.type, f.body);
    return m.code === MessageCode.Error ? statusName(m.status) : "not an Error";
  } catch {
    return "unreadable Error";
  }
}

function toHex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Sends mutated and random frames until `frames` were sent or `until` (epoch ms), paced evenly
 * over the time so the fuzz load does not come in one burst.
 *
 * - `parallel` long-lived connections pipeline framed mutations (`mutateFramed`), at most
 *   `window` unanswered at a time. The server closes a connection after 3 refused frames in a row
 *   (PROTOCOL.md §2.1); a served request resets that count, so after every 2 refused frames the
 *   fuzzer sends one valid harmless request (a balance inquiry of an unknown card),
 *   as a misbehaving but genuine reader would. The limit itself is untouched.
 * - One more connection at a time sends stream-breaking mutations (truncation, lying lengths,
 *   garbage) in short bursts over fresh connections, which the server closes.
 *
 * Never sends a money request the server may charge: the well-formed, well-sealed ones go under
 * sequence numbers the server must refuse (0, or below the connection's first), or are offline
 * uploads (1 slot in 16, one in flight per reader) whose every record the server must acknowledge
 * without charging (`refusedOfflineRecord`), so the soak's "no money moved" check covers the
 * sequence rules and the offline rules too. An upload answered with an Error instead of its
 * reply (`offlineUploadErrors`) is a failure, and its records are sent again unchanged, as a reader
 * holds them until they are acknowledged. Balance inquiries beyond the terminal's rate are
 * answered RateLimited, which still counts as served.
 */
export async function fuzz(
  port: number,
  target: FuzzTarget,
  options: {
    frames: number;
    until: number;
    parallel: number;
    seed: number;
    window?: number;
    /** The frames are paced to be sent by about this time (epoch ms; default `until`). */
    paceUntil?: number;
    /** Share of the frames sent as stream-breaking bursts (default 0.05). */
    burstShare?: number;
  },
): Promise<FuzzStats> {
  const stats: FuzzStats = {
    frames: 0,
    signed: 0,
    signedServed: 0,
    valid: 0,
    replies: 0,
    connections: 0,
    connectFailures: 0,
    unexpectedCloses: 0,
    codecCrashes: [],
    offlineRecords: 0,
    offlineRefused: 0,
    offlineCharged: 0,
    offlineUploadErrors: [],
  };
  const window = options.window ?? 32;
  const started = Date.now();
  // Paced to finish at 85% of the time, with a small lead so the pipelines never starve.
  const span = Math.max(1000, ((options.paceUntil ?? options.until) - started) * 0.85);
  const allowed = () =>
    Math.min(options.frames, options.frames * (Date.now() - started) / span + 2000);
  const done = () => stats.frames >= options.frames || Date.now() >= options.until;
  const burstShare = options.burstShare ?? 0.05;
  let burstFrames = 0;

  const pipelined = async (w: number) => {
    const rnd = new Random(options.seed + w * 7919);
    const me = target.readers[w % target.readers.length];
    const reader: FuzzReader = { terminalId: me.terminalId, chip: target.chip };
    const key = keyFromHex(me.keyHex);
    // Readers shared by several connections (fewer readers than connections) keep apart numbers.
    let sequence = 1 + Math.floor(w / target.readers.length) * 100_000_000;
    // The reader's offline counter (from the server's acknowledgements) and its SignOn limits;
    // one upload in flight at a time, so records are judged rather than waiting at a gap.
    let offlineNext = 1;
    let limits: OfflineLimits | null = null;
    let uploading = false;
    // The records of the upload not yet answered by its reply: a reader holds them until they are
    // acknowledged and sends the same ones again (never others under the same offline sequence).
    let held: OfflineRecord[] | null = null;
    let uploadSequence = -1;
    const own = w < target.readers.length; // a reader shared by connections uploads from one
    while (!done()) {
      let conn: Deno.TcpConn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        stats.connectFailures++;
        await delay(100);
        continue;
      }
      stats.connections++;
      uploading = false; // an upload unanswered on a closed connection is sent again
      uploadSequence = -1;
      let sent = 0;
      let answered = 0;
      let closed = false;
      const waiter = { wake: null as (() => void) | null };
      const reading = (async () => {
        const buf = new Uint8Array(16384);
        const parser = new Parser();
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            parser.parse(buf.subarray(0, n), (f) => {
              // Pushes are not answers; every answer and push may say the current version.
              if (f.type !== MessageCode.BlocklistPush) {
                answered++;
                stats.replies++;
              }
              heard = Math.max(heard, versionIn(f));
              if (f.type === MessageCode.SignOnReply) limits = signOnLimits(f) ?? limits;
              if (
                f.type === MessageCode.OfflineUploadReply ||
                f.type === MessageCode.OfflineUploadItemizedReply
              ) {
                offlineNext = tallyOffline(f, stats) ?? offlineNext;
                uploading = false;
                held = null;
                uploadSequence = -1;
              } else if (
                f.type === MessageCode.Error && f.sequence === uploadSequence &&
                sameBytes(computeMac(key, f.signed), f.mac)
              ) {
                stats.offlineUploadErrors.push({
                  sequence: f.sequence,
                  status: errorStatus(f),
                  at: Date.now(),
                });
                uploading = false;
                uploadSequence = -1;
              }
            });
            waiter.wake?.();
          }
        } catch { /* reset by the server */ }
        closed = true;
        waiter.wake?.();
      })();
      let refusedInRow = 0;
      /** The blocklist version the server last told this connection (sign-on, push, heartbeat). */
      let heard = -1;
      try {
        const floor = sequence;
        const signOn = encodeFrame(key, {
          terminalId: reader.terminalId,
          sequence: sequence++,
          timestamp: Math.floor(Date.now() / 1000),
        }, { code: MessageCode.SignOn, firmware: "fuzz-1.0" });
        await conn.write(signOn);
        sent++;
        stats.valid++;
        while (!done() && !closed) {
          if (stats.frames >= allowed()) {
            await delay(20);
            continue;
          }
          while (sent - answered > window && !closed) {
            await new Promise<void>((resolve) => {
              waiter.wake = resolve;
              setTimeout(resolve, 1000);
            });
            waiter.wake = null;
          }
          if (closed) break;
          const batch: Uint8Array[] = [];
          for (let i = 0; i < 8 && !done(); i++) {
            if (own && limits && !uploading && rnd.int(16) === 0) {
              // A served upload of records that must all be acknowledged and not charged: new ones,
              // or again the ones whose upload was not answered.
              const resent = held !== null;
              const records: OfflineRecord[] = held ?? Array.from(
                { length: 1 + rnd.int(4) },
                (_, k) => refusedOfflineRecord(rnd, target, limits!, offlineNext + k),
              );
              held = records;
              uploadSequence = sequence;
              batch.push(encodeFrame(key, {
                terminalId: reader.terminalId,
                sequence: sequence++,
                timestamp: Math.floor(Date.now() / 1000),
              }, {
                code: rnd.int(2) ? MessageCode.OfflineUploadItemized : MessageCode.OfflineUpload,
                records,
              }));
              stats.valid++;
              if (!resent) stats.offlineRecords += records.length;
              uploading = true;
              refusedInRow = 0;
              continue;
            }
            if (refusedInRow >= 2) {
              // A heartbeat at the version the server pushed is answered from memory: the
              // cheapest request a reader makes, as real readers make it every 30 s. Before the
              // version is known, a balance inquiry of a card nobody has (one indexed read).
              const m: Message = heard >= 0
                ? { code: MessageCode.Heartbeat, blocklistVersion: heard, offlineCount: 0 }
                : {
                  code: MessageCode.BalanceInquiry,
                  chip: `8${String(rnd.int(1e9)).padStart(9, "0")}`,
                };
              batch.push(encodeFrame(key, {
                terminalId: reader.terminalId,
                sequence: sequence++,
                timestamp: Math.floor(Date.now() / 1000),
              }, m));
              stats.valid++;
              refusedInRow = 0;
              continue;
            }
            const f = mutateFramed(reader, key, rnd, sequence++, stats.codecCrashes, floor);
            batch.push(f.bytes);
            stats.frames++;
            if (f.signed) stats.signed++;
            if (f.served) {
              stats.signedServed++;
              refusedInRow = 0;
            } else refusedInRow++;
          }
          const total = batch.reduce((a, b) => a + b.length, 0);
          const out = new Uint8Array(total);
          let at = 0;
          for (const b of batch) {
            out.set(b, at);
            at += b.length;
          }
          let written = 0;
          while (written < out.length) written += await conn.write(out.subarray(written));
          sent += batch.length;
        }
      } catch {
        closed = true; // the server closed the connection
      }
      if (closed && !done()) stats.unexpectedCloses++;
      // Let the last replies arrive, then close.
      const settle = Date.now() + 2000;
      while (!closed && answered < sent && Date.now() < settle) await delay(20);
      try {
        conn.close();
      } catch { /* already closed */ }
      await reading;
    }
  };

  const bursts = async () => {
    const rnd = new Random(options.seed + 104_729);
    const reader: FuzzReader = { terminalId: target.readers[0].terminalId, chip: target.chip };
    const key = keyFromHex(target.readers[0].keyHex);
    let sequence = 1;
    while (!done()) {
      if (burstFrames >= Math.min(allowed(), stats.frames) * burstShare + 30) {
        await delay(50);
        continue;
      }
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
        for (let i = 0; i < 3 && !done(); i++) {
          const frame = mutate(validFrame(reader, key, rnd, sequence++), rnd);
          await conn.write(frame);
          stats.frames++;
          burstFrames++;
        }
      } catch { /* the server closed the connection first: expected */ }
      try {
        conn.close();
      } catch { /* already closed */ }
      await reading;
    }
  };

  await Promise.all([
    ...Array.from({ length: options.parallel }, (_, i) => pipelined(i)),
    bursts(),
  ]);
  return stats;
}

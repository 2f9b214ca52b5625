/**
 * A reader's side of the protocol: connects as one terminal, numbers its requests, checks every
 * reply's MAC, matches replies to requests by sequence number and hands pushes to a listener.
 * The simulator and the tests both use it.
 */
import {
  type Frame,
  type FrameHeader,
  MAC_SIZE,
  type Message,
  MessageCode,
  statusName,
} from "../messages.ts";
import { parseBody, Parser, type RawFrame } from "../parser.ts";
import { computeMac, encodeFrame } from "../serializer.ts";
import { macEqual } from "../serializer.ts";

export interface ClientOptions {
  hostname?: string;
  port: number;
  terminalId: number;
  /** The terminal key, 32 bytes (or 64 hex digits). */
  key: Uint8Array | string;
  /** First sequence number to use (readers keep theirs across restarts). */
  sequence?: number;
}

/** A reply as the reader received it: the decoded message and the exact bytes. */
export interface Received extends Frame {
  bytes: Uint8Array;
  /** False for an Error frame with a zero MAC (the server did not know the key). */
  authenticated: boolean;
}

/** 64 hex digits → 32 bytes. */
export function keyFromHex(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new Error("Cannot read terminal key: expected 64 hex digits");
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export class TerminalClient {
  readonly key: Uint8Array;
  sequence: number;
  readonly #conn: Deno.TcpConn;
  readonly #pending = new Map<number, Array<(r: Received) => void>>();
  readonly #pushListeners = new Set<(r: Received) => void>();
  readonly #parser = new Parser();
  #closed = false;
  #failure: Error | null = null;
  readonly done: Promise<void>;

  private constructor(
    conn: Deno.TcpConn,
    readonly terminalId: number,
    key: Uint8Array,
    sequence: number,
  ) {
    this.#conn = conn;
    this.key = key;
    this.sequence = sequence;
    this.done = this.#readLoop();
  }

  static async connect(options: ClientOptions): Promise<TerminalClient> {
    const conn = await Deno.connect({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port,
    });
    conn.setNoDelay(true);
    const key = typeof options.key === "string" ? keyFromHex(options.key) : options.key;
    return new TerminalClient(conn, options.terminalId, key, options.sequence ?? 1);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Called with every unsolicited frame (sequence 0), e.g. blocklist pushes. */
  onPush(listener: (r: Received) => void): () => void {
    this.#pushListeners.add(listener);
    return () => this.#pushListeners.delete(listener);
  }

  /** Builds the frame of a request (the next sequence number unless given). */
  frame(
    m: Message,
    header: Partial<Omit<FrameHeader, "type">> = {},
  ): { bytes: Uint8Array; sequence: number } {
    const sequence = header.sequence ?? this.sequence++;
    const bytes = encodeFrame(this.key, {
      terminalId: header.terminalId ?? this.terminalId,
      sequence,
      timestamp: header.timestamp ?? Math.floor(Date.now() / 1000),
    }, m);
    return { bytes, sequence };
  }

  /** Sends a request and waits for the reply with its sequence number. */
  async request(m: Message, header: Partial<Omit<FrameHeader, "type">> = {}): Promise<Received> {
    const { bytes, sequence } = this.frame(m, header);
    return await this.sendFrame(bytes, sequence);
  }

  /** Sends prepared bytes and waits for the reply to `sequence`. */
  async sendFrame(bytes: Uint8Array, sequence: number): Promise<Received> {
    const reply = this.expect(sequence);
    try {
      await this.write(bytes);
    } catch (err) {
      // The write failed (the server went away): the reply will never come, and its rejection
      // must not surface later as an unhandled one.
      reply.catch(() => {});
      throw err;
    }
    return await reply;
  }

  /** A promise of the next reply carrying `sequence`. */
  expect(sequence: number): Promise<Received> {
    if (this.#closed) {
      return Promise.reject(
        this.#failure ?? new Error("Cannot wait for a reply: connection closed"),
      );
    }
    return new Promise((resolve, reject) => {
      const waiters = this.#pending.get(sequence) ?? [];
      waiters.push(resolve);
      this.#pending.set(sequence, waiters);
      this.done.then(() => {
        if (waiters.includes(resolve)) {
          reject(this.#failure ?? new Error("Cannot get a reply: connection closed"));
        }
      });
    });
  }

  /** Writes raw bytes (tests send garbage and split frames this way). */
  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(16384);
    try {
      for (;;) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        this.#parser.parse(buffer.subarray(0, n), (f) => this.#deliver(f));
      }
    } catch (err) {
      if (!this.#closed) this.#failure = err as Error;
    } finally {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // closed already
      }
    }
  }

  #deliver(f: RawFrame): void {
    // A frame for another terminal id is sealed with that terminal's key (PROTOCOL.md §2), which
    // this reader does not hold: it cannot verify it, so it drops it (e.g. the WrongTerminal
    // answer to a frame of another terminal written on this connection).
    if (f.terminalId !== this.terminalId) return;
    const bytes = new Uint8Array(f.signed.length + MAC_SIZE);
    bytes.set(f.signed);
    bytes.set(f.mac, f.signed.length);
    const zero = f.mac.every((b) => b === 0);
    const authenticated = macEqual(computeMac(this.key, f.signed), f.mac);
    if (!authenticated && !(zero && f.type === MessageCode.Error)) {
      throw new Error(`Cannot trust reply to sequence ${f.sequence}: bad MAC`);
    }
    const received: Received = {
      header: {
        type: f.type,
        terminalId: f.terminalId,
        sequence: f.sequence,
        timestamp: f.timestamp,
      },
      message: parseBody(f.type, f.body),
      bytes,
      authenticated,
    };
    if (f.sequence === 0 && f.type === MessageCode.BlocklistPush) {
      for (const l of this.#pushListeners) l(received);
      return;
    }
    const waiters = this.#pending.get(f.sequence);
    const next = waiters?.shift();
    if (waiters && waiters.length === 0) this.#pending.delete(f.sequence);
    if (next) next(received);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // closed already
      }
    }
    return this.done;
  }
}

/** "InsufficientBalance (0x0205)" for a status in a reply. */
export function describeStatus(status: number): string {
  return `${statusName(status)} (0x${status.toString(16).padStart(4, "0")})`;
}

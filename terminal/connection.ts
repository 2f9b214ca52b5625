/**
 * One reader connection: a loop reads into a fixed buffer, the parser hands over complete frames,
 * and each frame is checked (PROTOCOL.md §2.1: terminal, MAC, state, connection, timestamp, type,
 * kind, body, then §3's sequence rules) before the service sees it. Frames of one connection are
 * handled one at a time, in order, so a connection never holds more than one frame's work and
 * one read buffer.
 */
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import { Counter, Histogram, register } from "../modules/platform/metrics.ts";
import { recordTerminalError, recordTerminalSeen, type Terminal } from "../modules/merchant/mod.ts";
import {
  FrameError,
  hexCode,
  type Message,
  MessageCode,
  messageName,
  Status,
  statusName,
} from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import {
  computeMac,
  encodeFrame,
  encodeUnsealedFrame,
  macEqual,
  sealFrame,
  serializeBody,
} from "./serializer.ts";
import type { Reply, ServiceContext } from "./context.ts";
import type { ProtocolSettings } from "./settings.ts";
import { allowedFor } from "./kinds.ts";
import { handleRequest } from "./service.ts";
import { sequenceAnswered, sequenceRefusal, type SequenceState } from "./sequence.ts";

const log = logger("terminal");

const framesTotal = register(
  new Counter("yxt_terminal_frames_total", "Reader frames by type and outcome"),
);
const frameSeconds = register(
  new Histogram("yxt_terminal_frame_seconds", "Reader request handling time by type"),
);

/** Refused frames logged one by one per connection; the rest are counted. */
const MAX_REFUSALS_LOGGED = 20;

/** Refused frames recorded per connection for the administrator's live view. */
const MAX_ERRORS_RECORDED = 5;

/** A terminal as the registry knows it: null when unknown, with its current key. */
export interface RegisteredTerminal {
  terminal: Terminal | null;
  key: Uint8Array | null;
}

/** What a connection needs of the listener that accepted it. */
export interface ConnectionHost {
  readonly db: Db;
  readonly settings: ProtocolSettings;
  /** Refused frames in a row after which the connection is closed. */
  readonly maxBadFrames: number;
  /** True once the listener is closing: no new request starts. */
  readonly closing: boolean;
  /** Server time in Unix seconds (the protocol's clock). */
  nowSeconds(): number;
  /** The terminal of an id and its key (cached for a short while). */
  registered(terminalId: number): Promise<RegisteredTerminal>;
  /** The connection's first accepted frame binds it to its terminal (an older one is replaced). */
  bind(connection: Connection, terminal: Terminal): Promise<void>;
  /** The context a request of this listener is handled in. */
  serviceContext(): ServiceContext;
  /** Keeps `work` among the requests in flight until it settles (close waits for them). */
  track(work: Promise<void>): Promise<void>;
  /** The connection has ended. */
  ended(connection: Connection): void;
}

/** An identity a refused frame's Error can be sealed with (PROTOCOL.md §2.1). */
interface Sealer {
  id: number;
  key: Uint8Array | null;
}

export class Connection {
  /** 0 until a frame was accepted: then the terminal this connection belongs to. */
  terminalId = 0;
  key: Uint8Array | null = null;
  /** Refused frames in a row (§2.1: checks 2–9). */
  #badFrames = 0;
  #errorsRecorded = 0;
  /** Refused frames written to the log, and those counted but not written (see `refuse`). */
  #refusalsLogged = 0;
  #refusalsNotLogged = 0;
  readonly openedAt = Date.now();
  /** When the last accepted frame arrived (the idle timeout counts from here). */
  lastFrameAt = Date.now();
  /** Since when part of a frame is waiting for the rest (0: none). */
  partialSince = 0;
  /** The terminal's sequence numbers as this connection knows them (sequence.ts). */
  readonly #sequences: SequenceState = { highest: null, open: new Set() };
  /** A newer connection of the same terminal took over: close once the current frame is answered. */
  replaced = false;
  #lastSeenWritten = 0;
  /** A frame is being handled. */
  busy = false;
  closed = false;
  #writing: Promise<void> = Promise.resolve();

  constructor(
    readonly host: ConnectionHost,
    readonly conn: Deno.Conn,
    readonly address: string,
    readonly hostname: string,
  ) {}

  /** Reads and handles frames until the peer, the listener or a refusal ends the connection. */
  async serve(): Promise<void> {
    const buffer = new Uint8Array(8192);
    const parser = new Parser();
    const frames: RawFrame[] = [];
    try {
      while (!this.closed) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        try {
          parser.parse(buffer.subarray(0, n), (f) => frames.push(f));
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          log.warn("closing unframeable stream", { address: this.address, err: err.message });
          break;
        }
        this.partialSince = parser.buffered > 0 ? (this.partialSince || Date.now()) : 0;
        // Once closing, no new request starts; those already started finish and are answered.
        while (frames.length && !this.closed && !this.host.closing && !this.replaced) {
          this.busy = true;
          try {
            await this.host.track(this.handleFrame(frames.shift()!));
          } finally {
            this.busy = false;
          }
        }
        if (this.host.closing || this.replaced) break;
      }
    } catch (err) {
      if (
        !this.closed && !(err instanceof Deno.errors.BadResource) &&
        !(err instanceof Deno.errors.ConnectionReset)
      ) {
        log.warn("connection failed", { address: this.address, err: (err as Error).message });
      }
    } finally {
      this.close();
      this.host.ended(this);
      if (this.#refusalsNotLogged > 0) {
        log.warn("more frames refused on a closed connection", {
          address: this.address,
          terminal: this.terminalId,
          notLogged: this.#refusalsNotLogged,
        });
      }
    }
  }

  /** Checks one frame (§2.1, §3), hands an accepted one to the service and writes the reply. */
  async handleFrame(frame: RawFrame): Promise<void> {
    const started = performance.now();
    const accepted = await this.#accept(frame);
    if (!accepted) return;
    const { terminal, key, request } = accepted;
    const name = messageName(frame.type)!;
    const reused = await sequenceRefusal(this.host.db, this.#sequences, terminal.id, frame);
    if (reused) {
      return await this.refuse(frame, Status.SequenceReused, reused, { id: terminal.id, key }, {
        counted: false,
      });
    }
    // The liveness write runs beside the request, not before it: its own commit is not added to
    // the reply's time (it never fails; the reply still waits for it, below).
    const seen = this.#noteSeen(terminal);
    let reply: Reply;
    let busy = false;
    try {
      reply = await handleRequest(this.host.serviceContext(), terminal, frame, request);
    } catch (err) {
      log.error("request failed", {
        terminal: terminal.id,
        sequence: frame.sequence,
        type: name,
        err: (err as Error)?.stack ?? String(err),
      });
      reply = this.#errorReply(Status.ServerBusy);
      busy = true;
    }
    await seen;
    // A request the server could not handle keeps its number open for the reader's retry.
    sequenceAnswered(this.#sequences, frame.sequence, busy);
    await this.write(sealFrame(key, {
      type: reply.code,
      terminalId: terminal.id,
      sequence: frame.sequence,
      timestamp: reply.timestamp ?? frame.timestamp,
    }, reply.body));
    framesTotal.inc({
      type: name,
      outcome: reply.status !== undefined ? statusName(reply.status) : "sent",
    });
    frameSeconds.observe({ type: name }, (performance.now() - started) / 1000);
  }

  /**
   * The checks 2–9 of §2.1 in their order: the frame's terminal, key and message when it passes
   * them (the connection is then bound to the terminal), else null after refusing it.
   */
  async #accept(
    frame: RawFrame,
  ): Promise<{ terminal: Terminal; key: Uint8Array; request: Message } | null> {
    const { terminal, key } = await this.host.registered(frame.terminalId);
    if (!terminal || !key) {
      await this.refuse(frame, Status.UnknownTerminal, "unknown terminal", null);
      return null;
    }
    if (!macEqual(computeMac(key, frame.signed), frame.mac)) {
      const detail = `bad MAC on ${hexCode(frame.type)}`;
      await this.refuse(frame, Status.BadMac, detail, { id: terminal.id, key: null });
      return null;
    }
    const known = { id: terminal.id, key };
    const refusal = this.#refusal(frame, terminal);
    if (refusal) {
      await this.refuse(frame, refusal.status, refusal.detail, known);
      return null;
    }
    let request: Message;
    try {
      request = parseBody(frame.type, frame.body);
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      await this.refuse(frame, err.status, err.message, known);
      return null;
    }
    // Authenticated: the connection now belongs to this terminal (pushes go to it).
    this.key = key;
    if (this.terminalId === 0) {
      this.terminalId = terminal.id;
      await this.host.bind(this, terminal);
    }
    this.#badFrames = 0;
    this.lastFrameAt = Date.now();
    return { terminal, key, request };
  }

  /** Checks 4–8 of §2.1, which need neither the database nor the body. */
  #refusal(frame: RawFrame, terminal: Terminal): { status: number; detail: string } | null {
    if (terminal.status !== "active") {
      return { status: Status.TerminalDisabled, detail: "terminal disabled" };
    }
    if (this.terminalId !== 0 && this.terminalId !== terminal.id) {
      return {
        status: Status.WrongTerminal,
        detail: `connection belongs to terminal ${this.terminalId}`,
      };
    }
    const now = this.host.nowSeconds();
    if (Math.abs(now - frame.timestamp) > this.host.settings.timestampWindowSeconds) {
      return {
        status: Status.StaleTimestamp,
        detail: `timestamp ${frame.timestamp}, server ${now}`,
      };
    }
    const name = messageName(frame.type);
    if (!name || frame.type >= MessageCode.Error) {
      return { status: Status.UnknownType, detail: `unknown type ${hexCode(frame.type)}` };
    }
    if (!allowedFor(terminal.kind, frame.type)) {
      return { status: Status.NotAllowedForKind, detail: `${name} from ${terminal.kind}` };
    }
    return null;
  }

  /** Writes the reader's liveness for the live view, at most every 30 s per connection. */
  async #noteSeen(terminal: Terminal): Promise<void> {
    if (Date.now() - this.#lastSeenWritten <= 30_000) return;
    this.#lastSeenWritten = Date.now();
    // Awaited (once per 30 s per connection) so the live view is current when the reply arrives.
    await recordTerminalSeen(this.host.db, terminal.id, this.address).catch((err) =>
      log.error("cannot record terminal seen", { err: (err as Error).message })
    );
  }

  /**
   * Answers a refused frame with an Error message, logs it, and closes after repeated refusals
   * in a row (a SequenceReused of an accepted frame does not count: `counted` false). The Error
   * carries the refused frame's terminal id, sequence number and timestamp; it is sealed with
   * that terminal's key when its MAC verified, else it has a zero MAC (§2.1).
   */
  async refuse(
    frame: RawFrame,
    status: number,
    detail: string,
    sealer: Sealer | null,
    options: { counted?: boolean } = {},
  ): Promise<void> {
    const counted = options.counted ?? true;
    if (counted) this.#badFrames++;
    framesTotal.inc({ type: messageName(frame.type) ?? "unknown", outcome: statusName(status) });
    this.#logRefusal(frame, status, detail);
    if (sealer && this.#errorsRecorded < MAX_ERRORS_RECORDED) {
      // Recorded for the live view, a few per connection so a flood cannot fill the table.
      this.#errorsRecorded++;
      await recordTerminalError(this.host.db, sealer.id, {
        code: statusName(status),
        detail,
        address: this.address,
      }).catch((err) => log.error("cannot record terminal error", { err: (err as Error).message }));
    }
    const header = {
      terminalId: frame.terminalId,
      sequence: frame.sequence,
      timestamp: frame.timestamp,
    };
    const error: Message = { code: MessageCode.Error, status, serverTime: this.host.nowSeconds() };
    await this.write(
      sealer?.key ? encodeFrame(sealer.key, header, error) : encodeUnsealedFrame(header, error),
    );
    if (counted && this.#badFrames >= this.host.maxBadFrames) {
      log.warn("closing connection after repeated bad frames", {
        address: this.address,
        terminal: frame.terminalId,
      });
      this.close();
    }
  }

  /**
   * A flood of bad frames (a broken or hostile reader) must not flood the log: the first few of a
   * connection are written, the rest counted in one line when it closes (metrics count all).
   */
  #logRefusal(frame: RawFrame, status: number, detail: string): void {
    if (this.#refusalsLogged >= MAX_REFUSALS_LOGGED) {
      this.#refusalsNotLogged++;
      return;
    }
    this.#refusalsLogged++;
    log.warn("frame refused", {
      address: this.address,
      terminal: frame.terminalId,
      status: statusName(status),
      detail,
    });
  }

  #errorReply(status: number): Reply {
    const error: Message = { code: MessageCode.Error, status, serverTime: this.host.nowSeconds() };
    return { code: error.code, body: serializeBody(error) };
  }

  /** Sends an unsolicited frame (a push: sequence 0) to the bound terminal. */
  push(message: Message): Promise<void> {
    if (!this.key) return Promise.resolve();
    return this.write(encodeFrame(this.key, {
      terminalId: this.terminalId,
      sequence: 0,
      timestamp: this.host.nowSeconds(),
    }, message));
  }

  /** Writes frames in order; pushes and replies never interleave within a frame. */
  write(bytes: Uint8Array): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      if (this.closed) return;
      let off = 0;
      while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
    }).catch(() => this.close());
    return this.#writing;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the peer
    }
  }
}

/**
 * The readers' TCP listener. One loop per connection reads into a fixed buffer, the parser hands
 * over complete frames, and each frame is checked (terminal, MAC, timestamp, type) before the
 * service sees it. Frames of one connection are handled one at a time, in order, so a connection
 * never holds more than one frame's work and one read buffer.
 */
import type { Config } from "../modules/platform/config.ts";
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import { Counter, Gauge, Histogram, register } from "../modules/platform/metrics.ts";
import {
  deriveTerminalKey,
  findTerminal,
  recordTerminalError,
  recordTerminalSeen,
  type Terminal,
} from "../modules/merchant/mod.ts";
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
import {
  allowedFor,
  handleRequest,
  type ProtocolSettings,
  protocolSettings,
  type Reply,
} from "./service.ts";
import { BlocklistBroadcaster } from "./push.ts";
import { type ConnectionLimits, connectionLimits, LookupAllowance } from "./limits.ts";
import { sequenceAnswered, sequenceRefusal, type SequenceState } from "./sequence.ts";

const log = logger("terminal");

const framesTotal = register(
  new Counter("yxt_terminal_frames_total", "Reader frames by type and outcome"),
);
const frameSeconds = register(
  new Histogram("yxt_terminal_frame_seconds", "Reader request handling time by type"),
);
const connectionsGauge = register(new Gauge("yxt_terminal_connections", "Open reader connections"));
const unauthenticatedGauge = register(
  new Gauge(
    "yxt_terminal_unauthenticated_connections",
    "Open reader connections that have not yet sent an accepted frame",
  ),
);
const connectionsRefused = register(
  new Counter(
    "yxt_terminal_connections_refused_total",
    "Reader connections closed at accept, by the limit they hit",
  ),
);

export interface TerminalServerOptions {
  port: number;
  hostname?: string;
  /** An authenticated connection with no accepted frame for this long is closed (ms). */
  idleTimeoutMs?: number;
  /** A frame that has started must be complete within this long (ms): slow senders are cut. */
  frameTimeoutMs?: number;
  /** Refused frames a connection may send before it is closed. */
  maxBadFrames?: number;
  /** How long a terminal's registry entry (status, key version) is trusted before re-reading (ms). */
  registryTtlMs?: number;
  settings?: Partial<ProtocolSettings>;
  /** Connection and chip lookup limits; the rest from the environment (limits.ts). */
  limits?: Partial<ConnectionLimits>;
  /**
   * The protocol's clock (ms, default `Date.now`): server time in replies and pushes, the
   * timestamp window, the chip lookup allowance. Tests replaying PROTOCOL.md §6 fix it.
   */
  clock?: () => number;
}

/** A running listener. */
export interface TerminalServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Open connections. */
  readonly connectionCount: number;
  /** True while `terminalId` holds an authenticated connection here. */
  connected(terminalId: number): boolean;
  /** Stops accepting, lets in-flight requests finish, closes every connection. */
  close(): Promise<void>;
}

interface CachedTerminal {
  terminal: Terminal | null;
  key: Uint8Array | null;
  until: number;
}

/** Refused frames logged one by one per connection; the rest are counted. */
const MAX_REFUSALS_LOGGED = 20;

/** One reader connection. */
export class Connection {
  /** 0 until a frame was accepted: then the terminal this connection belongs to. */
  terminalId = 0;
  key: Uint8Array | null = null;
  badFrames = 0;
  errorsLogged = 0;
  /** Refused frames written to the log, and those counted but not written (see `refuse`). */
  refusalsLogged = 0;
  refusalsNotLogged = 0;
  readonly openedAt = Date.now();
  /** When the last accepted frame arrived (the idle timeout counts from here). */
  lastFrameAt = Date.now();
  partialSince = 0;
  /** The terminal's sequence numbers as this connection knows them (sequence.ts). */
  readonly sequences: SequenceState = { highest: null, open: new Set() };
  /** A newer connection of the same terminal took over: close once the current frame is answered. */
  replaced = false;
  lastSeenWritten = 0;
  busy = false;
  closed = false;
  #writing: Promise<void> = Promise.resolve();

  constructor(readonly conn: Deno.Conn, readonly address: string, readonly host: string) {}

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

function addressOf(conn: Deno.Conn): { address: string; host: string } {
  const a = conn.remoteAddr as Deno.NetAddr;
  return a.hostname
    ? { address: `${a.hostname}:${a.port}`, host: a.hostname }
    : { address: "unknown", host: "unknown" };
}

/** Starts the listener for readers. */
export function startTerminalServer(
  deps: { db: Db; config: Config },
  options: TerminalServerOptions,
): TerminalServer {
  const { db, config } = deps;
  const idleTimeoutMs = options.idleTimeoutMs ?? 180_000;
  const frameTimeoutMs = options.frameTimeoutMs ?? 15_000;
  const maxBadFrames = options.maxBadFrames ?? 3;
  const registryTtlMs = options.registryTtlMs ?? 1_000;
  const settings = protocolSettings(config, options.settings);
  const limits = connectionLimits(config, options.limits);
  const clock = options.clock ?? Date.now;
  const nowSeconds = () => Math.floor(clock() / 1000);
  const lookups = new LookupAllowance(limits.lookupsPerMinute, clock);
  const listener = Deno.listen({
    port: options.port,
    hostname: options.hostname ?? "0.0.0.0",
    transport: "tcp",
  });
  const port = (listener.addr as Deno.NetAddr).port;
  const connections = new Set<Connection>();
  /** The connection each terminal is served on (the newest that sent an accepted frame). */
  const byTerminal = new Map<number, Connection>();
  /** Connections without an accepted frame yet, per remote address and in all. */
  const unauthenticated = new Map<string, number>();
  let unauthenticatedTotal = 0;
  let refusedSinceLogged = 0;
  let refusedLoggedAt = 0;
  const cache = new Map<number, CachedTerminal>();
  const inFlight = new Set<Promise<void>>();
  let closing = false;

  const broadcaster = new BlocklistBroadcaster(db, connections, (c, m) => send(c, m, 0));
  connectionsGauge.set({}, () => connections.size);
  unauthenticatedGauge.set({}, () => unauthenticatedTotal);

  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const c of connections) {
      if (c.busy) continue;
      if (c.partialSince && now - c.partialSince > frameTimeoutMs) {
        log.warn("closing slow sender", { address: c.address, terminal: c.terminalId });
        c.close();
      } else if (c.terminalId === 0 && now - c.openedAt > limits.authTimeoutMs) {
        c.close();
      } else if (now - c.lastFrameAt > idleTimeoutMs) {
        c.close();
      }
    }
  }, Math.min(1000, frameTimeoutMs, idleTimeoutMs, limits.authTimeoutMs));

  /** Whether a new connection from `host` fits the limits (§2.2); counts it when it does. */
  function admit(host: string): string | null {
    const fromHost = unauthenticated.get(host) ?? 0;
    const limit = connections.size >= limits.maxConnections
      ? "connections"
      : unauthenticatedTotal >= limits.maxUnauthenticated
      ? "unauthenticated"
      : limits.maxUnauthenticatedPerAddress > 0 && fromHost >= limits.maxUnauthenticatedPerAddress
      ? "unauthenticated_per_address"
      : null;
    if (limit) return limit;
    unauthenticated.set(host, fromHost + 1);
    unauthenticatedTotal++;
    return null;
  }

  /** A connection leaves the unauthenticated count: its first frame was accepted, or it closed. */
  function authenticatedOrGone(c: Connection): void {
    const n = (unauthenticated.get(c.host) ?? 1) - 1;
    if (n > 0) unauthenticated.set(c.host, n);
    else unauthenticated.delete(c.host);
    unauthenticatedTotal--;
  }

  /** A flood of refused connections writes one line a minute with their count, not one each. */
  function noteRefusedConnection(host: string, limit: string): void {
    connectionsRefused.inc({ limit });
    refusedSinceLogged++;
    if (Date.now() - refusedLoggedAt < 60_000) return;
    log.warn("reader connections refused at accept", {
      host,
      limit,
      refused: refusedSinceLogged,
    });
    refusedSinceLogged = 0;
    refusedLoggedAt = Date.now();
  }

  /**
   * Binds `c` to terminal `t` at its first accepted frame. A terminal is served on one connection:
   * an older one (half-open after a network fault, or a second reader holding the same key) is
   * closed once its current frame is answered, and the live view shows it.
   */
  async function bind(c: Connection, t: Terminal, key: Uint8Array): Promise<void> {
    c.terminalId = t.id;
    c.key = key;
    authenticatedOrGone(c);
    const older = byTerminal.get(t.id);
    byTerminal.set(t.id, c);
    if (!older || older === c || older.closed) return;
    older.replaced = true;
    if (!older.busy) older.close();
    log.warn("connection replaced by a newer one of the same terminal", {
      terminal: t.id,
      older: older.address,
      newer: c.address,
    });
    await recordTerminalError(db, t.id, {
      code: "ConnectionReplaced",
      detail: `older connection ${older.address} closed`,
      address: c.address,
    }).catch((err) => log.error("cannot record terminal error", { err: (err as Error).message }));
  }

  async function lookup(id: number): Promise<CachedTerminal> {
    const now = Date.now();
    const hit = cache.get(id);
    if (hit && hit.until > now) return hit;
    const terminal = await findTerminal(db, id);
    const entry: CachedTerminal = {
      terminal,
      key: terminal ? deriveTerminalKey(config.appSecret, terminal.id, terminal.keyVersion) : null,
      until: now + registryTtlMs,
    };
    // Random ids from garbage must not grow the cache without bound.
    if (cache.size > 50_000) cache.clear();
    cache.set(id, entry);
    return entry;
  }

  function send(c: Connection, m: Message, sequence: number): Promise<void> {
    if (!c.key) return Promise.resolve();
    return c.write(
      encodeFrame(c.key, { terminalId: c.terminalId, sequence, timestamp: nowSeconds() }, m),
    );
  }

  /**
   * Answers a refused frame with an Error message, logs it, and closes after repeated refusals
   * in a row (a SequenceReused of an accepted frame does not count: `counted` false). The Error
   * carries the refused frame's terminal id, sequence number and timestamp; it is sealed with
   * that terminal's key when its MAC verified, else it has a zero MAC (§2.1).
   */
  async function refuse(
    c: Connection,
    f: RawFrame,
    status: number,
    detail: string,
    terminal: { id: number; key: Uint8Array | null } | null,
    counted = true,
  ): Promise<void> {
    if (counted) c.badFrames++;
    framesTotal.inc({ type: messageName(f.type) ?? "unknown", outcome: statusName(status) });
    const header = { terminalId: f.terminalId, sequence: f.sequence, timestamp: f.timestamp };
    const m: Message = { code: MessageCode.Error, status, serverTime: nowSeconds() };
    // A flood of bad frames (a broken or hostile reader) must not flood the log: the first few of
    // a connection are written, the rest counted in one line when it closes (metrics count all).
    if (c.refusalsLogged < MAX_REFUSALS_LOGGED) {
      c.refusalsLogged++;
      log.warn("frame refused", {
        address: c.address,
        terminal: f.terminalId,
        status: statusName(status),
        detail,
      });
    } else c.refusalsNotLogged++;
    if (terminal && c.errorsLogged < 5) {
      // Logged for the live view, a few per connection so a flood cannot fill the table.
      c.errorsLogged++;
      await recordTerminalError(db, terminal.id, {
        code: statusName(status),
        detail,
        address: c.address,
      })
        .catch((err) => log.error("cannot record terminal error", { err: (err as Error).message }));
    }
    await c.write(
      terminal?.key ? encodeFrame(terminal.key, header, m) : encodeUnsealedFrame(header, m),
    );
    if (counted && c.badFrames >= maxBadFrames) {
      log.warn("closing connection after repeated bad frames", {
        address: c.address,
        terminal: f.terminalId,
      });
      c.close();
    }
  }

  async function handleFrame(c: Connection, f: RawFrame): Promise<void> {
    const started = performance.now();
    const entry = await lookup(f.terminalId);
    const t = entry.terminal;
    if (!t || !entry.key) return refuse(c, f, Status.UnknownTerminal, "unknown terminal", null);
    const known = { id: t.id, key: entry.key };
    if (!macEqual(computeMac(entry.key, f.signed), f.mac)) {
      return refuse(c, f, Status.BadMac, `bad MAC on ${hexCode(f.type)}`, { id: t.id, key: null });
    }
    if (t.status !== "active") {
      return refuse(c, f, Status.TerminalDisabled, "terminal disabled", known);
    }
    if (c.terminalId !== 0 && c.terminalId !== t.id) {
      return refuse(
        c,
        f,
        Status.WrongTerminal,
        `connection belongs to terminal ${c.terminalId}`,
        known,
      );
    }
    const now = nowSeconds();
    if (Math.abs(now - f.timestamp) > settings.timestampWindowSeconds) {
      return refuse(c, f, Status.StaleTimestamp, `timestamp ${f.timestamp}, server ${now}`, known);
    }
    const name = messageName(f.type);
    if (!name || f.type >= 0x7f) {
      return refuse(c, f, Status.UnknownType, `unknown type ${hexCode(f.type)}`, known);
    }
    if (!allowedFor(t.kind, f.type)) {
      return refuse(c, f, Status.NotAllowedForKind, `${name} from ${t.kind}`, known);
    }
    let message: Message;
    try {
      message = parseBody(f.type, f.body);
    } catch (err) {
      if (err instanceof FrameError) return refuse(c, f, err.status, err.message, known);
      throw err;
    }
    // Authenticated: the connection now belongs to this terminal (pushes go to it).
    if (c.terminalId === 0) await bind(c, t, entry.key);
    c.key = entry.key;
    c.badFrames = 0;
    c.lastFrameAt = Date.now();
    const reused = await sequenceRefusal(db, c.sequences, t.id, f);
    if (reused) return refuse(c, f, Status.SequenceReused, reused, known, false);
    if (Date.now() - c.lastSeenWritten > 30_000) {
      c.lastSeenWritten = Date.now();
      // Awaited (once per 30 s per connection) so the live view is current when the reply arrives.
      await recordTerminalSeen(db, t.id, c.address).catch((err) =>
        log.error("cannot record terminal seen", { err: (err as Error).message })
      );
    }
    let reply: Reply;
    let busy = false;
    try {
      reply = await handleRequest(
        {
          db,
          config,
          settings,
          lookups,
          clock,
          pushedBlocklistVersion: () => broadcaster.version,
        },
        t,
        f,
        message,
      );
    } catch (err) {
      log.error("request failed", {
        terminal: t.id,
        sequence: f.sequence,
        type: name,
        err: (err as Error)?.stack ?? String(err),
      });
      reply = {
        code: MessageCode.Error,
        body: serializeBody({
          code: MessageCode.Error,
          status: Status.ServerBusy,
          serverTime: nowSeconds(),
        }),
      };
      busy = true;
    }
    // A request the server could not handle keeps its number open for the reader's retry.
    sequenceAnswered(c.sequences, f.sequence, busy);
    const header = {
      type: reply.code,
      terminalId: t.id,
      sequence: f.sequence,
      timestamp: reply.timestamp ?? f.timestamp,
    };
    await c.write(sealFrame(entry.key, header, reply.body));
    framesTotal.inc({
      type: name,
      outcome: reply.status !== undefined ? statusName(reply.status) : "sent",
    });
    frameSeconds.observe({ type: name }, (performance.now() - started) / 1000);
  }

  async function serve(c: Connection): Promise<void> {
    const buffer = new Uint8Array(8192);
    const parser = new Parser();
    const frames: RawFrame[] = [];
    try {
      while (!c.closed) {
        const n = await c.conn.read(buffer);
        if (n === null) break;
        try {
          parser.parse(buffer.subarray(0, n), (f) => frames.push(f));
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          log.warn("closing unframeable stream", { address: c.address, err: err.message });
          break;
        }
        c.partialSince = parser.buffered > 0 ? (c.partialSince || Date.now()) : 0;
        // Once closing, no new request starts; those already started finish and are answered.
        while (frames.length && !c.closed && !closing && !c.replaced) {
          const f = frames.shift()!;
          c.busy = true;
          const work = handleFrame(c, f);
          inFlight.add(work);
          try {
            await work;
          } finally {
            inFlight.delete(work);
            c.busy = false;
          }
        }
        if (closing || c.replaced) break;
      }
    } catch (err) {
      if (
        !c.closed && !(err instanceof Deno.errors.BadResource) &&
        !(err instanceof Deno.errors.ConnectionReset)
      ) {
        log.warn("connection failed", { address: c.address, err: (err as Error).message });
      }
    } finally {
      c.close();
      connections.delete(c);
      if (c.terminalId === 0) authenticatedOrGone(c);
      else if (byTerminal.get(c.terminalId) === c) byTerminal.delete(c.terminalId);
      if (c.refusalsNotLogged > 0) {
        log.warn("more frames refused on a closed connection", {
          address: c.address,
          terminal: c.terminalId,
          notLogged: c.refusalsNotLogged,
        });
      }
    }
  }

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const { address, host } = addressOf(conn);
        const limit = closing ? "closing" : admit(host);
        if (limit) {
          if (!closing) noteRefusedConnection(host, limit);
          conn.close();
          continue;
        }
        try {
          conn.setNoDelay(true);
        } catch {
          // not every platform allows it
        }
        const c = new Connection(conn, address, host);
        connections.add(c);
        serve(c);
      }
    } catch (err) {
      if (!closing) log.error("listener failed", { err: (err as Error).message });
    }
  })();

  log.info("terminal listener started", { port });

  return {
    port,
    get connectionCount() {
      return connections.size;
    },
    connected(terminalId: number): boolean {
      const c = byTerminal.get(terminalId);
      return c !== undefined && !c.closed;
    },
    async close(): Promise<void> {
      if (closing) return;
      closing = true;
      clearInterval(sweeper);
      broadcaster.stop();
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      // Requests already being handled finish and their replies are written before closing.
      await Promise.allSettled([...inFlight]);
      for (const c of connections) c.close();
      connections.clear();
    },
  };
}

/**
 * The readers' TCP listener (PROTOCOL.md §1, §2.2): accepts connections within the limits, keeps
 * one connection per terminal, knows the terminals and their keys (briefly cached), pushes
 * blocklist changes, closes idle and slow connections, and on close lets the requests in flight
 * finish. Each connection is a `Connection` (connection.ts).
 */
import type { Config } from "../modules/platform/config.ts";
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import { Counter, Gauge, register } from "../modules/platform/metrics.ts";
import { recordTerminalError, type Terminal } from "../modules/merchant/mod.ts";
import type { ServiceContext } from "./context.ts";
import { type ProtocolSettings, protocolSettings } from "./settings.ts";
import { BlocklistBroadcaster } from "./push.ts";
import { type ConnectionLimits, connectionLimits, LookupAllowance } from "./limits.ts";
import { Connection, type ConnectionHost, type RegisteredTerminal } from "./connection.ts";
import { TerminalRegistry } from "./registry.ts";

const log = logger("terminal");

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

/** Starts the listener for readers. */
export function startTerminalServer(
  deps: { db: Db; config: Config },
  options: TerminalServerOptions,
): TerminalServer {
  return new ReaderListener(deps, options);
}

class ReaderListener implements TerminalServer, ConnectionHost {
  readonly db: Db;
  readonly config: Config;
  readonly settings: ProtocolSettings;
  readonly maxBadFrames: number;
  readonly port: number;
  closing = false;
  readonly #limits: ConnectionLimits;
  readonly #lookups: LookupAllowance;
  readonly #offlineCodeGuesses: LookupAllowance;
  readonly #clock: () => number;
  readonly #idleTimeoutMs: number;
  readonly #frameTimeoutMs: number;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<Connection>();
  /** The connection each terminal is served on (the newest that sent an accepted frame). */
  readonly #byTerminal = new Map<number, Connection>();
  /** Connections without an accepted frame yet, per remote address and in all. */
  readonly #unauthenticated = new Map<string, number>();
  #unauthenticatedTotal = 0;
  #refusedSinceLogged = 0;
  #refusedLoggedAt = 0;
  readonly #registry: TerminalRegistry;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #broadcaster: BlocklistBroadcaster<Connection>;
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly #accepting: Promise<void>;

  constructor(deps: { db: Db; config: Config }, options: TerminalServerOptions) {
    this.db = deps.db;
    this.config = deps.config;
    this.settings = protocolSettings(deps.config, options.settings);
    this.maxBadFrames = options.maxBadFrames ?? 3;
    this.#limits = connectionLimits(deps.config, options.limits);
    this.#clock = options.clock ?? Date.now;
    this.#lookups = new LookupAllowance(this.#limits.lookupsPerMinute, this.#clock);
    this.#offlineCodeGuesses = new LookupAllowance(
      this.#limits.offlineCodeGuessesPerMinute,
      this.#clock,
    );
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 180_000;
    this.#frameTimeoutMs = options.frameTimeoutMs ?? 15_000;
    this.#registry = new TerminalRegistry(
      this.db,
      this.config.appSecret,
      options.registryTtlMs ?? 1_000,
    );
    this.#listener = Deno.listen({
      port: options.port,
      hostname: options.hostname ?? "0.0.0.0",
      transport: "tcp",
    });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#broadcaster = new BlocklistBroadcaster(
      this.db,
      this.#connections,
      (c, message) => c.push(message),
    );
    connectionsGauge.set({}, () => this.#connections.size);
    unauthenticatedGauge.set({}, () => this.#unauthenticatedTotal);
    this.#sweeper = setInterval(
      () => this.#sweep(),
      Math.min(1000, this.#frameTimeoutMs, this.#idleTimeoutMs, this.#limits.authTimeoutMs),
    );
    this.#accepting = this.#accept();
    log.info("terminal listener started", { port: this.port });
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  connected(terminalId: number): boolean {
    const c = this.#byTerminal.get(terminalId);
    return c !== undefined && !c.closed;
  }

  nowSeconds(): number {
    return Math.floor(this.#clock() / 1000);
  }

  serviceContext(): ServiceContext {
    return {
      db: this.db,
      config: this.config,
      settings: this.settings,
      lookups: this.#lookups,
      offlineCodeGuesses: this.#offlineCodeGuesses,
      clock: this.#clock,
      pushedBlocklistVersion: () => this.#broadcaster.version,
    };
  }

  async track(work: Promise<void>): Promise<void> {
    this.#inFlight.add(work);
    try {
      await work;
    } finally {
      this.#inFlight.delete(work);
    }
  }

  registered(terminalId: number): Promise<RegisteredTerminal> {
    return this.#registry.get(terminalId);
  }

  /**
   * A connection's first accepted frame: it stops counting as unauthenticated and serves its
   * terminal. A terminal is served on one connection: an older one (half-open after a network
   * fault, or a second reader holding the same key) is closed once its current frame is answered,
   * and the live view shows it.
   */
  async bind(connection: Connection, terminal: Terminal): Promise<void> {
    this.#authenticatedOrGone(connection);
    const older = this.#byTerminal.get(terminal.id);
    this.#byTerminal.set(terminal.id, connection);
    if (!older || older === connection || older.closed) return;
    older.replaced = true;
    if (!older.busy) older.close();
    log.warn("connection replaced by a newer one of the same terminal", {
      terminal: terminal.id,
      older: older.address,
      newer: connection.address,
    });
    await recordTerminalError(this.db, terminal.id, {
      code: "ConnectionReplaced",
      detail: `older connection ${older.address} closed`,
      address: connection.address,
    }).catch((err) => log.error("cannot record terminal error", { err: (err as Error).message }));
  }

  ended(connection: Connection): void {
    this.#connections.delete(connection);
    if (connection.terminalId === 0) this.#authenticatedOrGone(connection);
    else if (this.#byTerminal.get(connection.terminalId) === connection) {
      this.#byTerminal.delete(connection.terminalId);
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.#sweeper);
    await this.#registry.stop();
    this.#broadcaster.stop();
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    await this.#accepting;
    // Requests already being handled finish and their replies are written before closing.
    await Promise.allSettled([...this.#inFlight]);
    for (const c of this.#connections) c.close();
    this.#connections.clear();
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const remote = conn.remoteAddr as Deno.NetAddr;
        const hostname = remote.hostname || "unknown";
        const address = remote.hostname ? `${remote.hostname}:${remote.port}` : "unknown";
        const limit = this.closing ? "closing" : this.#admit(hostname);
        if (limit) {
          if (!this.closing) this.#noteRefusedConnection(hostname, limit);
          conn.close();
          continue;
        }
        try {
          conn.setNoDelay(true);
        } catch {
          // not every platform allows it
        }
        const c = new Connection(this, conn, address, hostname);
        this.#connections.add(c);
        c.serve();
      }
    } catch (err) {
      if (!this.closing) log.error("listener failed", { err: (err as Error).message });
    }
  }

  /** The limit a new connection from `hostname` hits (§2.2), or null: then it is counted. */
  #admit(hostname: string): string | null {
    const fromHost = this.#unauthenticated.get(hostname) ?? 0;
    const limits = this.#limits;
    const limit = this.#connections.size >= limits.maxConnections
      ? "connections"
      : this.#unauthenticatedTotal >= limits.maxUnauthenticated
      ? "unauthenticated"
      : limits.maxUnauthenticatedPerAddress > 0 && fromHost >= limits.maxUnauthenticatedPerAddress
      ? "unauthenticated_per_address"
      : null;
    if (limit) return limit;
    this.#unauthenticated.set(hostname, fromHost + 1);
    this.#unauthenticatedTotal++;
    return null;
  }

  /** A connection leaves the unauthenticated count: its first frame was accepted, or it closed. */
  #authenticatedOrGone(c: Connection): void {
    const n = (this.#unauthenticated.get(c.hostname) ?? 1) - 1;
    if (n > 0) this.#unauthenticated.set(c.hostname, n);
    else this.#unauthenticated.delete(c.hostname);
    this.#unauthenticatedTotal--;
  }

  /** A flood of refused connections writes one line a minute with their count, not one each. */
  #noteRefusedConnection(hostname: string, limit: string): void {
    connectionsRefused.inc({ limit });
    this.#refusedSinceLogged++;
    if (Date.now() - this.#refusedLoggedAt < 60_000) return;
    log.warn("reader connections refused at accept", {
      host: hostname,
      limit,
      refused: this.#refusedSinceLogged,
    });
    this.#refusedSinceLogged = 0;
    this.#refusedLoggedAt = Date.now();
  }

  /** Closes slow senders, connections that never sent an accepted frame, and idle ones. */
  #sweep(): void {
    const now = Date.now();
    for (const c of this.#connections) {
      if (c.busy) continue;
      if (c.partialSince && now - c.partialSince > this.#frameTimeoutMs) {
        log.warn("closing slow sender", { address: c.address, terminal: c.terminalId });
        c.close();
      } else if (c.terminalId === 0 && now - c.openedAt > this.#limits.authTimeoutMs) {
        c.close();
      } else if (now - c.lastFrameAt > this.#idleTimeoutMs) {
        c.close();
      }
    }
  }
}

/**
 * 终端: the readers' TCP protocol (terminal/PROTOCOL.md). Canteen and supermarket POS, QR
 * scanners and shower controllers pay through the wallet over compact MAC-protected frames.
 */
import type { Db } from "../modules/platform/database.ts";
import { provideTerminalActivity } from "../modules/merchant/mod.ts";
import {
  startTerminalServer as start,
  type TerminalServer,
  type TerminalServerOptions,
} from "./server.ts";
import type { Config } from "../modules/platform/config.ts";
import { terminalTransactions } from "./service.ts";

/** Message and status codes, frame limits and message shapes. */
export * from "./messages.ts";
/** Frame encoding and the MAC. */
export {
  computeMac,
  encodeFrame,
  encodeUnsealedFrame,
  sealFrame,
  serializeBody,
} from "./serializer.ts";
/** Stream parser and body decoder. */
export { parseBody, Parser, type RawFrame } from "./parser.ts";
/** Settings given to readers, the wallet reference of a reader request, a holder's masked name. */
export { type ProtocolSettings, protocolSettings } from "./settings.ts";
export { requestReference } from "./context.ts";
export { maskName } from "./reads.ts";
export type { TerminalServer, TerminalServerOptions };
/** A reader's side of the protocol (the simulator's client), for other modules' tests and the bench. */
export {
  type ClientOptions,
  describeStatus,
  keyFromHex,
  type Received,
  TerminalClient,
} from "./sim/client.ts";
/** Load mode of the simulator: readers and funded cards, and a timed run with a latency summary. */
export {
  type LoadKind,
  type LoadReader,
  type LoadSummary,
  runLoad,
  setupLoad,
} from "./sim/load.ts";

const servers = new Set<TerminalServer>();

provideTerminalActivity({
  transactions: (db: Db, terminalId: number, limit: number) =>
    terminalTransactions(db, terminalId, limit),
  connected: (terminalId: number) => [...servers].some((s) => s.connected(terminalId)),
});

/** Starts the reader listener; its connections show as online on the staff pages. */
export function startTerminalServer(
  deps: { db: Db; config: Config },
  options: TerminalServerOptions,
): TerminalServer {
  const server = start(deps, options);
  servers.add(server);
  return {
    port: server.port,
    get connectionCount() {
      return server.connectionCount;
    },
    connected: (terminalId: number) => server.connected(terminalId),
    close: async () => {
      servers.delete(server);
      await server.close();
    },
  };
}

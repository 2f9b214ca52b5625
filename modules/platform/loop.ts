/**
 * The one shape of a background loop (hold expiry, top-up checks, delivery jobs): one round at a
 * time, never two at once; a failed round is logged and the loop goes on; `stop` (for
 * onShutdown) ends the loop and waits for the round in progress.
 */
import type { Logger } from "./log.ts";

/** A running loop. */
export interface BackgroundLoop {
  /** Ends the loop; resolves when the round in progress (if any) has finished. */
  stop(): Promise<void>;
  /** Runs the next round now instead of at the end of the wait (not while one runs: after it). */
  wake(): void;
}

export interface LoopOptions {
  /** What a round is, for the log: "<name> failed". */
  name: string;
  log: Logger;
  /** The wait between the end of one round and the start of the next. */
  everyMs: number;
  /** Run the first round at once rather than after the first wait. */
  startAtOnce?: boolean;
  /** One round; `true` means more work is waiting, so the next round starts without a wait. */
  round: () => Promise<boolean | void>;
}

/** Starts a background loop. */
export function startLoop(options: LoopOptions): BackgroundLoop {
  let stopped = false;
  let woken = false;
  let wakeWait = () => {};
  const wait = () =>
    new Promise<void>((resolve) => {
      if (woken || stopped) return resolve();
      const timer = setTimeout(resolve, options.everyMs);
      wakeWait = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      wakeWait = () => {};
      woken = false;
    });
  const running = (async () => {
    if (!options.startAtOnce) await wait();
    while (!stopped) {
      let more = false;
      try {
        more = (await options.round()) === true;
      } catch (err) {
        options.log.error(`${options.name} failed`, { err: (err as Error).message });
      }
      if (!more) await wait();
    }
  })();
  return {
    async stop() {
      stopped = true;
      wakeWait();
      await running;
    },
    wake() {
      woken = true;
      wakeWait();
    },
  };
}

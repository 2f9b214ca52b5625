import assert from "node:assert/strict";
import type { Logger } from "./log.ts";
import { startLoop } from "./loop.ts";

const HOUR = 3_600_000;

/** A loop of test rounds an hour apart (tests drive it with wake and stop, never the clock). */
function testLoop(
  log: Logger,
  round: () => Promise<boolean | void>,
  options: { startAtOnce?: boolean; everyMs?: number } = {},
) {
  return startLoop({ name: "test round", log, everyMs: HOUR, ...options, round });
}

/** A logger that keeps what it is told. */
function keepingLog() {
  const errors: Array<{ msg: string; fields?: Record<string, unknown> }> = [];
  const log = {
    debug() {},
    info() {},
    warn() {},
    error(msg: string, fields?: Record<string, unknown>) {
      errors.push({ msg, fields });
    },
  } as unknown as Logger;
  return { log, errors };
}

/** A promise with its resolve function outside. */
function signal<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("loop: the first round waits unless asked to start at once; wake runs one now", async () => {
  const { log } = keepingLog();
  let rounds = 0;
  let ran = signal();
  const loop = testLoop(log, () => {
    rounds++;
    ran.resolve();
    return Promise.resolve();
  });
  await Promise.resolve();
  assert.equal(rounds, 0);
  loop.wake();
  await ran.promise;
  assert.equal(rounds, 1);
  ran = signal();
  loop.wake();
  await ran.promise;
  assert.equal(rounds, 2);
  await loop.stop();

  const first = signal();
  const atOnce = testLoop(log, () => Promise.resolve(first.resolve()), { startAtOnce: true });
  await first.promise;
  await atOnce.stop();
});

Deno.test("loop: rounds never overlap, a wake during a round runs one more after it", async () => {
  const { log } = keepingLog();
  let active = 0;
  let most = 0;
  let rounds = 0;
  const release = signal();
  const started = signal();
  const second = signal();
  const loop = testLoop(log, async () => {
    active++;
    most = Math.max(most, active);
    rounds++;
    if (rounds === 1) {
      started.resolve();
      await release.promise;
    } else second.resolve();
    active--;
  }, { startAtOnce: true });
  await started.promise;
  loop.wake();
  loop.wake();
  assert.equal(rounds, 1, "no second round while the first runs");
  release.resolve();
  await second.promise;
  await loop.stop();
  assert.equal(most, 1);
  assert.equal(rounds, 2, "two wakes during one round make one round after it");
});

Deno.test("loop: a failed round is logged, not thrown, and the loop goes on", async () => {
  const { log, errors } = keepingLog();
  let rounds = 0;
  const after = signal();
  const loop = testLoop(log, () => {
    rounds++;
    if (rounds === 1) return Promise.reject(new Error("database went away"));
    after.resolve();
    return Promise.resolve();
  }, { startAtOnce: true });
  while (errors.length === 0) await new Promise((r) => queueMicrotask(() => r(undefined)));
  assert.deepEqual(errors, [{ msg: "test round failed", fields: { err: "database went away" } }]);
  loop.wake();
  await after.promise;
  await loop.stop();
  assert.equal(rounds, 2);
});

Deno.test("loop: 'more work' runs the next round without a wait", async () => {
  const { log } = keepingLog();
  let rounds = 0;
  const done = signal();
  const loop = testLoop(log, () => {
    rounds++;
    if (rounds === 3) done.resolve();
    return Promise.resolve(rounds < 3);
  }, { startAtOnce: true });
  await done.promise;
  await loop.stop();
  assert.equal(rounds, 3);
});

Deno.test("loop: stop waits for the round in progress and no round starts after it", async () => {
  const { log } = keepingLog();
  const started = signal();
  const release = signal();
  let finished = false;
  let rounds = 0;
  const loop = testLoop(log, async () => {
    rounds++;
    started.resolve();
    await release.promise;
    finished = true;
  }, { startAtOnce: true, everyMs: 0 });
  await started.promise;
  const stopping = loop.stop();
  let stoppedEarly = false;
  void stopping.then(() => stoppedEarly = !finished);
  release.resolve();
  await stopping;
  assert.equal(stoppedEarly, false);
  assert.equal(finished, true);
  assert.equal(rounds, 1);
});

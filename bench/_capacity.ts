/**
 * Capacity at a latency objective: the highest offered rate (open loop) whose p99 stays within the
 * objective. Each contender climbs its own ladder of rates; the contenders take turns, one step
 * each, so the reference and ours climb through the same minutes of a shared machine.
 *
 * A climb: from a start rate, up by `step` while the objective holds. The first step that misses
 * is run once more (a single stall of the machine does not end a climb); missed again, the climb
 * bisects once between the highest rate that held and the one that missed, and stops. When the
 * start itself misses twice, the climb steps down instead (÷ 1.5, at most three times, no more
 * retries) until a rate holds, then bisects once upwards.
 */

/** One offered rate tried, and what it gave. */
export interface Step {
  rate: number;
  p99Ms: number;
  /** Share over the objective (failed and skipped requests included). */
  overLimit: number;
  held: boolean;
}

/** Where a climb ended. */
export interface Climb {
  /** The highest rate that held; 0 when none did. */
  capacity: number;
  /** The lowest rate that missed twice (or on the bisection step); NaN when none did. */
  missedAt: number;
  steps: Step[];
}

/** A contender: how to offer it `rate` a second, returning p99 and the share over the objective. */
export interface Contender {
  name: string;
  start: number;
  offer(rate: number): Promise<{ p99Ms: number; overLimit: number }>;
}

const MAX_STEPS = 12;

class Ladder {
  rate: number;
  held = 0;
  missed = NaN;
  retried = false;
  downs = 0;
  bisected = false;
  done = false;
  steps: Step[] = [];

  constructor(readonly c: Contender, readonly step: number) {
    this.rate = c.start;
  }

  observe(held: boolean): void {
    if (held) {
      this.held = this.rate;
      if (this.bisected) this.done = true;
      else if (!Number.isNaN(this.missed)) this.#bisect();
      else this.rate *= this.step;
      return;
    }
    if (this.bisected) {
      this.missed = this.rate;
      this.done = true;
      return;
    }
    if (!this.retried) {
      this.retried = true;
      return;
    }
    this.missed = this.rate;
    if (this.held > 0) this.#bisect();
    else if (this.downs < 3) {
      this.downs++;
      this.rate /= 1.5;
    } else this.done = true;
  }

  #bisect(): void {
    this.bisected = true;
    this.rate = Math.sqrt(this.held * this.missed);
  }
}

/**
 * Climbs every contender's ladder, taking turns, until each has found its capacity at
 * p99 ≤ `objectiveMs`.
 */
export async function climb(
  contenders: Contender[],
  options: { objectiveMs: number; step: number; log?: (line: string) => void },
): Promise<Map<string, Climb>> {
  const ladders = contenders.map((c) => new Ladder(c, options.step));
  while (ladders.some((l) => !l.done)) {
    for (const l of ladders) {
      if (l.done) continue;
      const rate = Math.round(l.rate);
      l.rate = rate;
      let r: { p99Ms: number; overLimit: number };
      try {
        r = await l.c.offer(rate);
      } catch (err) {
        options.log?.(`${l.c.name} at ${rate}/s failed: ${(err as Error).message}`);
        r = { p99Ms: Infinity, overLimit: 1 };
      }
      // p99 within the objective is the same as at most 1% of requests beyond it.
      const held = r.p99Ms <= options.objectiveMs;
      l.steps.push({ rate, p99Ms: r.p99Ms, overLimit: r.overLimit, held });
      options.log?.(
        `${l.c.name} at ${rate}/s: p99 ${r.p99Ms.toFixed(1)} ms, ${
          (r.overLimit * 100).toFixed(1)
        }% over ${options.objectiveMs} ms → ${held ? "held" : "missed"}`,
      );
      l.observe(held);
      if (l.steps.length >= MAX_STEPS) l.done = true;
    }
  }
  return new Map(ladders.map((l) => [l.c.name, {
    capacity: l.held,
    missedAt: l.missed,
    steps: l.steps,
  }]));
}

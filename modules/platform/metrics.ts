/** A tiny Prometheus registry: counters and histograms with labels, rendered as text. */
type Labels = Record<string, string>;

function key(labels: Labels): string {
  return Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, "_")}"`).join(",");
}

export class Counter {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + by);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.#values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${v}`);
    return lines.join("\n");
  }
}

export class Gauge {
  readonly #values = new Map<string, () => number>();
  constructor(readonly name: string, readonly help: string) {}
  set(labels: Labels, read: () => number): void {
    this.#values.set(key(labels), read);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [k, read] of this.#values) lines.push(`${this.name}${k ? `{${k}}` : ""} ${read()}`);
    return lines.join("\n");
  }
}

export class Histogram {
  readonly #series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  ) {}
  observe(labels: Labels, seconds: number): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.bounds.length; i++) if (seconds <= this.bounds[i]) s.buckets[i]++;
    s.sum += seconds;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.#series) {
      const pre = k ? `${k},` : "";
      this.bounds.forEach((b, i) =>
        lines.push(`${this.name}_bucket{${pre}le="${b}"} ${s.buckets[i]}`)
      );
      lines.push(`${this.name}_bucket{${pre}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k ? `{${k}}` : ""} ${s.sum}`);
      lines.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}`);
    }
    return lines.join("\n");
  }
}

const registry: Array<Counter | Histogram | Gauge> = [];

/** Registers a metric so `/metrics` renders it. */
export function register<T extends Counter | Histogram | Gauge>(metric: T): T {
  registry.push(metric);
  return metric;
}

/** Prometheus text exposition of every registered metric. */
export function renderMetrics(): string {
  return registry.map((m) => m.render()).join("\n") + "\n";
}

export const httpRequests = register(
  new Counter("yxt_http_requests_total", "HTTP requests by method, route and status"),
);
export const httpErrors = register(
  new Counter("yxt_http_errors_total", "HTTP requests that ended in a server error"),
);
export const httpDuration = register(
  new Histogram("yxt_http_request_duration_seconds", "HTTP request latency by route"),
);

/** The results of `deno task bench`, written as bench/RESULTS.md. */
import type { Row } from "./_lib.ts";

/** A target and where it stands. */
export interface TargetLine {
  figure: string;
  target: string;
  value: string;
  verdict: string;
}

/** A table of its own (interleaved ratios, CPU per operation, capacity). */
interface Table {
  title: string;
  intro: string;
  columns: string[];
  rows: string[][];
}

/** Collects rows, tables and notes while the bench runs; each section fails soft into a row. */
export class Report {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  readonly targets: TargetLine[] = [];
  readonly #tables = new Map<string, Table>();
  readonly startedAt = new Date();

  /** Adds a figure to the "Other figures" table (and to the targets when it has one). */
  add(row: Row): void {
    this.rows.push(row);
    if (row.target) {
      this.targets.push({
        figure: `${row.section} · ${row.figure}`,
        target: row.target,
        value: row.value,
        verdict: row.verdict ?? "",
      });
    }
    const target = row.target
      ? `  (target ${row.target}${row.verdict ? `: ${row.verdict}` : ""})`
      : "";
    console.log(`  ${row.section} · ${row.figure}: ${row.value}${target}`);
  }

  /** Records a figure that could not be measured, with the reason. */
  notMeasured(section: string, figure: string, reason: string, target?: string): void {
    this.add({
      section,
      figure,
      value: `not measured: ${reason}`,
      target,
      verdict: target ? "not measured" : undefined,
    });
  }

  /** Declares a table of its own; it is written in the order declared, before "Other figures". */
  table(title: string, columns: string[], intro: string): void {
    if (!this.#tables.has(title)) this.#tables.set(title, { title, intro, columns, rows: [] });
  }

  /** A row of a declared table; `target` also lists it among the targets. */
  tableRow(title: string, cells: string[], target?: TargetLine): void {
    const t = this.#tables.get(title);
    if (!t) throw new Error(`no table ${title}`);
    t.rows.push(cells);
    if (target) this.targets.push(target);
    console.log(`  ${title} · ${cells.join(" · ")}`);
  }

  /** A free-text observation for the notes below the tables. */
  note(text: string): void {
    this.notes.push(text);
    console.log(`  note: ${text}`);
  }

  /** Runs one section; an exception becomes a "not measured" row instead of ending the run. */
  async section(name: string, figures: string[], body: () => Promise<void>): Promise<void> {
    console.log(`\n== ${name}`);
    const before = this.rows.length;
    const start = performance.now();
    try {
      await body();
    } catch (err) {
      const reason = ((err as Error).message ?? String(err)).split("\n")[0].slice(0, 300);
      const done = new Set(this.rows.slice(before).map((r) => r.figure));
      const missing = figures.filter((f) => !done.has(f));
      for (const f of missing.length ? missing : [name]) this.notMeasured(name, f, reason);
      console.log(`  (${name} failed: ${(err as Error).stack ?? err})`);
    }
    console.log(`  (${name}: ${((performance.now() - start) / 1000).toFixed(0)} s)`);
  }

  /** The Markdown document; `where` is the text of the "Where the time goes" section. */
  render(machine: Array<[string, string]>, how: string, where: string[]): string {
    const esc = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");
    const md = (columns: string[], rows: string[][]) => [
      `| ${columns.map(esc).join(" | ")} |`,
      `|${columns.map(() => "---").join("|")}|`,
      ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
    ];
    const stamp = (d: Date) => d.toISOString().slice(0, 16).replace("T", " ");
    const lines = [
      "# Benchmark results",
      "",
      `Run of \`deno task bench\` started ${stamp(this.startedAt)} UTC, finished ${
        stamp(new Date())
      } UTC. ${how}`,
      "",
      "Every ratio comes from interleaved pairs: after a warm-up, the reference and ours run",
      "alternately (A B A B A B, one measurement slice each), and the ratio is the median of the",
      "pairs' ratios with their min–max. A target is **met** when the whole spread is on its side,",
      "**missed** when the whole spread is on the other, and **not decided** when the spread",
      "crosses it.",
      "",
      "## Machine",
      "",
      ...md(["", ""], machine),
      "",
      "## Targets",
      "",
      ...md(
        ["figure", "target", "value", "verdict"],
        this.targets.map((t) => [t.figure, t.target, t.value, t.verdict]),
      ),
      "",
    ];
    for (const t of this.#tables.values()) {
      lines.push(`## ${t.title}`, "", t.intro, "");
      if (t.rows.length) lines.push(...md(t.columns, t.rows), "");
      else lines.push("Not measured in this run (see the options above).", "");
    }
    lines.push(
      "## Other figures",
      "",
      ...md(
        ["section", "figure", "value", "target", "ratio / verdict"],
        this.rows.map((r) => [r.section, r.figure, r.value, r.target ?? "", r.verdict ?? ""]),
      ),
      "",
      "## Where the time goes",
      "",
      ...where,
      "",
    );
    if (this.notes.length) {
      lines.push("## Notes", "", ...this.notes.map((n) => `- ${n}`), "");
    }
    return lines.join("\n");
  }
}

/** The results table of `deno task bench`, written as bench/RESULTS.md. */
import type { Row } from "./_lib.ts";

/** Collects rows and notes while the bench runs; each section fails soft into a note. */
export class Report {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];
  readonly startedAt = new Date();

  /** Adds a measured figure. */
  add(row: Row): void {
    this.rows.push(row);
    const target = row.target
      ? `  (target ${row.target}${row.verdict ? `: ${row.verdict}` : ""})`
      : "";
    console.log(`  ${row.section} · ${row.figure}: ${row.value}${target}`);
  }

  /** Records a figure that could not be measured, with the reason. */
  notMeasured(section: string, figure: string, reason: string, target?: string): void {
    this.add({ section, figure, value: `not measured: ${reason}`, target });
  }

  /** A free-text observation for the notes below the table. */
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

  /** The Markdown document. */
  render(machine: Array<[string, string]>, how: string): string {
    const esc = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");
    const lines = [
      "# Benchmark results",
      "",
      `Run of \`deno task bench\` started ${
        this.startedAt.toISOString().slice(0, 16).replace("T", " ")
      } UTC` +
      `, finished ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC. ${how}`,
      "",
      "Figures measured side by side in one run on one machine; where a target is a ratio, the",
      "reference (pgbench, a bare Hono route) ran on the same server in the same run.",
      "",
      "## Machine",
      "",
      "| | |",
      "|---|---|",
      ...machine.map(([k, v]) => `| ${esc(k)} | ${esc(v)} |`),
      "",
      "## Figures",
      "",
      "| section | figure | value | target | ratio / verdict |",
      "|---|---|---|---|---|",
      ...this.rows.map((r) =>
        `| ${esc(r.section)} | ${esc(r.figure)} | ${esc(r.value)} | ${esc(r.target ?? "")} | ${
          esc(r.verdict ?? "")
        } |`
      ),
      "",
    ];
    if (this.notes.length) {
      lines.push("## Notes", "", ...this.notes.map((n) => `- ${n}`), "");
    }
    return lines.join("\n");
  }
}

/** Facts about the machine a benchmark ran on, for the results table. */
import { pgBinary, run } from "./_lib.ts";

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await run(cmd, args, { timeoutMs: 20_000 });
    return (r.stdout || r.stderr).trim().split("\n")[0] || "unknown";
  } catch (err) {
    return `unavailable (${(err as Error).message.slice(0, 60)})`;
  }
}

/** CPU, cores, memory, kernel and the versions of everything in the measurement. */
export async function machineFacts(): Promise<Array<[string, string]>> {
  let cpu = "unknown";
  let memory = "unknown";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1] ?? cpu;
  } catch { /* not Linux */ }
  try {
    const mem = await Deno.readTextFile("/proc/meminfo");
    const kb = Number(/^MemTotal:\s+(\d+)/m.exec(mem)?.[1]);
    if (kb) memory = `${(kb / 1024 / 1024).toFixed(1)} GiB`;
  } catch { /* not Linux */ }
  const load = await Deno.readTextFile("/proc/loadavg").then((t) =>
    t.split(" ").slice(0, 3).join(" ")
  )
    .catch(() => "unknown");
  return [
    ["CPU", cpu],
    ["Cores", String(navigator.hardwareConcurrency)],
    ["Memory", memory],
    ["Load average at start (1/5/15 min)", load],
    ["Kernel", await firstLine("uname", ["-sr"])],
    ["Deno", `${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`],
    ["PostgreSQL", await firstLine(pgBinary("postgres"), ["--version"])],
    ["pgbench", await firstLine(pgBinary("pgbench"), ["--version"])],
    ["wrk", (await firstLine("wrk", ["-v"])).replace(/\s+Copyright.*/, "")],
    ["Chromium", await firstLine("chromium", ["--version"])],
  ];
}

/** HTTP load with Debian's wrk: requests/s and latency percentiles. */
import { join } from "node:path";
import { OUT, run } from "./_lib.ts";

/** What wrk reports for one run. */
export interface WrkResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** Responses outside 2xx/3xx plus socket errors. */
  errors: number;
}

function toMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000;
}

/** Parses wrk's `--latency` output. */
export function parseWrk(out: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rps) throw new Error(`wrk printed no Requests/sec: ${out.slice(-300)}`);
  const p = (q: string) => {
    const m = new RegExp(`^\\s+${q}%\\s+(\\S+)`, "m").exec(out);
    return m ? toMs(m[1]) : NaN;
  };
  const total = /(\d+) requests in/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return {
    requestsPerSecond: Number(rps[1]),
    p50Ms: p("50"),
    p99Ms: p("99"),
    requests: total ? Number(total[1]) : 0,
    errors: (non2xx ? Number(non2xx[1]) : 0) + sockErrors,
  };
}

/** Runs wrk against `url` with `connections` for `seconds`. */
export async function wrk(
  url: string,
  options: {
    connections: number;
    seconds: number;
    method?: "GET" | "POST";
    headers?: Record<string, string>;
    /** Requests take turns among these sessions (each a set of extra headers). */
    sessions?: Array<Record<string, string>>;
  },
): Promise<WrkResult> {
  const args = [
    "-t",
    "2",
    "-c",
    String(options.connections),
    "-d",
    `${options.seconds}s`,
    "--timeout",
    "5s",
    "--latency",
  ];
  for (const [k, v] of Object.entries(options.headers ?? {})) args.push("-H", `${k}: ${v}`);
  let script = "";
  if (options.method === "POST" || options.sessions?.length) {
    script = join(OUT, `wrk-${crypto.randomUUID().slice(0, 8)}.lua`);
    await Deno.writeTextFile(script, luaScript(options.method ?? "GET", options.sessions ?? [{}]));
    args.push("-s", script);
  }
  args.push(url);
  const r = await run("wrk", args, { timeoutMs: (options.seconds + 30) * 1000 }).finally(() =>
    script ? Deno.remove(script).catch(() => {}) : undefined
  );
  if (r.code !== 0) throw new Error(`wrk failed: ${(r.stderr || r.stdout).slice(-300)}`);
  return parseWrk(r.stdout);
}

function luaString(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, "\\n")}"`;
}

/** A wrk script that sends `method` with an empty body, rotating through `sessions`' headers. */
function luaScript(method: string, sessions: Array<Record<string, string>>): string {
  const rows = sessions.map((h) =>
    `  {${Object.entries(h).map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`).join(", ")}},`
  );
  return [
    "local sessions = {",
    ...rows,
    "}",
    "local i = 0",
    "request = function()",
    "  i = i + 1",
    `  return wrk.format(${luaString(method)}, nil, sessions[(i % #sessions) + 1], "")`,
    "end",
    "",
  ].join("\n");
}

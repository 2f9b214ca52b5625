import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Modules every other module may enter beyond mod.ts: the shell and its shared utilities. */
const OPEN_FILES = /^modules\/platform\/[a-z_]+\.ts$/;

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* sourceFiles(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

/** "modules/card/service.ts" → "card"; "terminal/server.ts" → "terminal". */
function moduleOf(rel: string): string | null {
  const m = /^modules\/([a-z_]+)\//.exec(rel);
  if (m) return m[1];
  if (rel.startsWith("terminal/")) return "terminal";
  return null;
}

function isEntry(rel: string): boolean {
  return /^modules\/[a-z_]+\/mod\.ts$/.test(rel) || rel === "terminal/mod.ts" ||
    OPEN_FILES.test(rel);
}

async function importsOf(file: string): Promise<string[]> {
  const text = await Deno.readTextFile(file);
  const specs: string[] = [];
  const re =
    /(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|import\s+["']([^"']+)["']/g;
  for (const m of text.matchAll(re)) specs.push(m[1] ?? m[2] ?? m[3]);
  return specs.filter((s) => s.startsWith("."));
}

async function collectEdges() {
  const edges: Array<{ from: string; to: string; fromModule: string; toModule: string }> = [];
  for (const top of ["modules", "terminal"]) {
    try {
      for await (const file of sourceFiles(join(ROOT, top))) {
        const rel = relative(ROOT, file);
        const fromModule = moduleOf(rel)!;
        for (const spec of await importsOf(file)) {
          const target = relative(ROOT, resolve(dirname(file), spec));
          const toModule = moduleOf(target);
          if (toModule && toModule !== fromModule) {
            edges.push({ from: rel, to: target, fromModule, toModule });
          }
        }
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return edges;
}

Deno.test("modules enter each other only through mod.ts", async () => {
  const breaches = (await collectEdges()).filter((e) => !isEntry(e.to))
    .filter((e) => !(e.from.endsWith("_test.ts") && e.to === "modules/platform/testing.ts"));
  assert.deepEqual(breaches.map((e) => `${e.from} -> ${e.to}`), []);
});

Deno.test("module dependencies have no cycles", async () => {
  const graph = new Map<string, Set<string>>();
  for (const e of await collectEdges()) {
    if (e.from.endsWith("_test.ts")) continue;
    if (!graph.has(e.fromModule)) graph.set(e.fromModule, new Set());
    graph.get(e.fromModule)!.add(e.toModule);
  }
  const state = new Map<string, "visiting" | "done">();
  const cycles: string[] = [];
  const visit = (m: string, path: string[]) => {
    if (state.get(m) === "done") return;
    if (state.get(m) === "visiting") {
      cycles.push([...path.slice(path.indexOf(m)), m].join(" -> "));
      return;
    }
    state.set(m, "visiting");
    for (const n of graph.get(m) ?? []) visit(n, [...path, m]);
    state.set(m, "done");
  };
  for (const m of graph.keys()) visit(m, []);
  assert.deepEqual(cycles, []);
});

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

/** Every circle found by a depth-first walk of a graph, as "a -> b -> a". */
function cyclesOf(graph: Map<string, Iterable<string>>): string[] {
  const state = new Map<string, "visiting" | "done">();
  const cycles: string[] = [];
  const visit = (node: string, path: string[]) => {
    if (state.get(node) === "done") return;
    if (state.get(node) === "visiting") {
      cycles.push([...path.slice(path.indexOf(node)), node].join(" -> "));
      return;
    }
    state.set(node, "visiting");
    for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) visit(node, []);
  return cycles;
}

Deno.test("modules enter each other only through mod.ts", async () => {
  const breaches = (await collectEdges()).filter((e) => !isEntry(e.to))
    .filter((e) => !(e.from.endsWith("_test.ts") && e.to === "modules/platform/testing.ts"));
  assert.deepEqual(breaches.map((e) => `${e.from} -> ${e.to}`), []);
});

/**
 * Test code: tests, the test worlds beside them (`_test_support.ts`, `_testing.ts`) and testkit,
 * which builds the whole app for them. The product's graph leaves it out: a test world may build
 * on testkit, which reaches every module.
 */
const isTestCode = (rel: string) =>
  /(_test|_test_support|_testing)\.ts$/.test(rel) || rel.startsWith("modules/testkit/");

Deno.test("module dependencies have no cycles", async () => {
  const graph = new Map<string, Set<string>>();
  for (const e of await collectEdges()) {
    if (isTestCode(e.from)) continue;
    if (!graph.has(e.fromModule)) graph.set(e.fromModule, new Set());
    graph.get(e.fromModule)!.add(e.toModule);
  }
  assert.deepEqual(cyclesOf(graph), []);
});

Deno.test("no file inside modules/ imports itself through a circle of imports", async () => {
  const graph = new Map<string, string[]>();
  for await (const file of sourceFiles(join(ROOT, "modules"))) {
    const rel = relative(ROOT, file);
    if (rel.endsWith("_test.ts")) continue;
    graph.set(
      rel,
      (await importsOf(file)).map((spec) => relative(ROOT, resolve(dirname(file), spec)))
        .filter((to) => to.startsWith("modules/") && !to.endsWith("_test.ts")),
    );
  }
  assert.deepEqual(cyclesOf(graph), []);
});

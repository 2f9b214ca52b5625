import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { loadAssets, serveAsset, withoutComments } from "./assets.ts";

const STATIC = fileURLToPath(new URL("../../static/", import.meta.url));

async function ownFiles(ext: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(STATIC)) if (e.name.endsWith(ext)) names.push(e.name);
  return names.sort();
}

/** The lines of a text that are neither blank nor comments (what must survive), trimmed. */
function codeLines(text: string): string[] {
  return text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("//"));
}

Deno.test("scripts go out without their comment lines, every line of code kept", async () => {
  for (const name of await ownFiles(".js")) {
    const source = await Deno.readTextFile(STATIC + name);
    const sent = withoutComments(name, source);
    if (name === "sw.js") {
      assert.equal(sent, source, "the service worker stays as written");
      continue;
    }
    assert.doesNotMatch(sent, /^\s*\/\//m, `${name}: no comment line left`);
    assert.deepEqual(codeLines(sent), codeLines(source), `${name}: the code is untouched`);
    // Still a script that parses (Function compiles it without running it).
    new Function(sent);
  }
});

Deno.test("stylesheets go out without their comments, every rule kept", async () => {
  for (const name of await ownFiles(".css")) {
    const source = await Deno.readTextFile(STATIC + name);
    const sent = withoutComments(name, source);
    assert.ok(!sent.includes("/*") && !sent.includes("*/"), `${name}: no comment left`);
    const rules = (css: string) =>
      css.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\s+/g, " ").replace(/ ?([{};]) ?/g, "$1");
    assert.equal(rules(sent), rules(source), `${name}: the same rules`);
  }
});

Deno.test("vendor files and the worker are served as they are; ours without comments", async () => {
  await loadAssets();
  const text = async (name: string) => {
    const res = serveAsset(name, undefined);
    assert.ok(res, name);
    return await res.text();
  };
  assert.doesNotMatch(await text("app.css"), /\/\*/);
  assert.doesNotMatch(await text("app.js"), /^\s*\/\//m);
  assert.match(await text("sw.js"), /caches only the shell/);
  const htmx = await text("vendor/htmx.min.js");
  assert.equal(
    htmx,
    await Deno.readTextFile(fileURLToPath(import.meta.resolve("htmx.org/dist/htmx.min.js"))),
  );
});

import { fileURLToPath as fromFileUrl } from "node:url";
import { gzipSync } from "node:zlib";

/** A static file held in memory with its gzip form and a content hash for cache busting. */
interface Asset {
  body: Uint8Array;
  gzip: Uint8Array;
  type: string;
  hash: string;
}

const TYPES: Record<string, string> = {
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
};

const ROOT = new URL("../../", import.meta.url);

/** Files served under /static/: our own static/ folder plus vendor files from installed packages. */
const VENDOR: Record<string, string> = {
  "vendor/htmx.min.js": "node_modules/htmx.org/dist/htmx.min.js",
  // Drawn in the browser only for 离线付款码 (static/pay_offline.js); online, the server draws.
  "vendor/qrcode.js": "node_modules/qrcode-generator/dist/qrcode.js",
};

const assets = new Map<string, Asset>();

async function digest(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return Array.from(d.slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Our own stylesheets and page scripts go out without their comments: the sources keep them, but
 * a cold load on a campus 3G link pays for every byte (about 2 KB of the 30 KB budget of 付款码).
 * Only whole-line `//` comments in scripts and `/* … *\/` blocks in stylesheets, which cannot be
 * part of a string in these files. Vendor files come minified; the service worker is fetched
 * once per release, not by a page's load, and stays as written.
 */
export function withoutComments(name: string, text: string): string {
  if (name.startsWith("vendor/") || name === "sw.js") return text;
  if (name.endsWith(".css")) return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\n\s*\n/g, "\n");
  if (name.endsWith(".js")) return text.replace(/^[ \t]*\/\/.*\n/gm, "");
  return text;
}

async function addFile(name: string, path: string): Promise<void> {
  const raw = await Deno.readFile(path);
  const body = /\.(css|js)$/.test(name)
    ? new TextEncoder().encode(withoutComments(name, new TextDecoder().decode(raw)))
    : raw;
  const ext = name.split(".").pop() ?? "";
  assets.set(name, {
    body,
    gzip: new Uint8Array(gzipSync(body, { level: 9 })),
    type: TYPES[ext] ?? "application/octet-stream",
    hash: await digest(body),
  });
}

async function walk(dir: string, prefix: string): Promise<void> {
  for await (const entry of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) await walk(`${dir}/${entry.name}`, rel);
    else if (entry.isFile) await addFile(rel, `${dir}/${entry.name}`);
  }
}

/** Reads static/ and vendor files into memory, compressed once. Call at start. */
export async function loadAssets(): Promise<void> {
  assets.clear();
  await walk(fromFileUrl(new URL("static", ROOT)), "");
  for (const [name, rel] of Object.entries(VENDOR)) {
    await addFile(name, fromFileUrl(new URL(rel, ROOT)));
  }
}

/** URL of a static asset with its content hash, e.g. `/static/app.css?v=1a2b3c`. */
export function assetUrl(name: string): string {
  const a = assets.get(name);
  if (!a) throw new Error(`Cannot find static asset ${name}`);
  return `/static/${name}?v=${a.hash}`;
}

/** The response for GET /static/<name>, or null when there is no such asset. */
export function serveAsset(name: string, acceptEncoding: string | undefined): Response | null {
  const a = assets.get(name);
  if (!a) return null;
  const gz = /\bgzip\b/.test(acceptEncoding ?? "");
  const headers = new Headers({
    "content-type": a.type,
    "cache-control": "public, max-age=31536000, immutable",
    etag: `"${a.hash}"`,
    vary: "accept-encoding",
  });
  if (gz) headers.set("content-encoding", "gzip");
  const body = gz ? a.gzip : a.body;
  return new Response(body as BodyInit, { headers });
}

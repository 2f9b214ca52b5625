/**
 * The security suite's limits (issue 11): request bodies are refused above their limit before
 * anything parses them, without the server reading (or keeping) what a client keeps sending; and
 * `/metrics` answers only this host or the bearer of METRICS_TOKEN.
 */
import assert from "node:assert/strict";
import { createApp, UPLOAD_PATHS } from "../../main.ts";
import { FORM_BODY_LIMIT, UPLOAD_BODY_LIMIT } from "../platform/mod.ts";
import { csrfFor, TestClient, testConfig } from "../platform/testing.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, routesOf, setupApp } from "../testkit/mod.ts";

const MB = 1024 * 1024;
const CHUNK = 64 * 1024;

/** A client's body of `total` bytes, made as it is pulled; counts what the server pulled. */
function streamedBody(total: number, fill = "a") {
  const chunk = new TextEncoder().encode(`_x=${fill.repeat(CHUNK)}`.slice(0, CHUNK));
  const seen = { pulled: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (seen.pulled >= total) return controller.close();
      const n = Math.min(CHUNK, total - seen.pulled);
      seen.pulled += n;
      controller.enqueue(n === CHUNK ? chunk.slice() : chunk.slice(0, n));
    },
    cancel() {
      seen.cancelled = true;
    },
  }, { highWaterMark: 0 });
  return { stream, seen };
}

const socket = (ip: string) => ({ remoteAddr: { transport: "tcp", hostname: ip, port: 50000 } });

async function post(
  app: { request: TestClient["app"]["request"] },
  path: string,
  body: ReadableStream<Uint8Array>,
  headers: Record<string, string>,
): Promise<Response> {
  return await app.request(
    new Request(`http://localhost:8000${path}`, { method: "POST", body, headers }),
    undefined,
    socket("203.0.113.7"),
  );
}

const FORM = { "content-type": "application/x-www-form-urlencoded" };

Deno.test("a 200 MB chunked POST to /login is refused with 413 once the form limit is passed", async () => {
  const { h, app } = await setupApp();
  try {
    const { stream, seen } = streamedBody(200 * MB);
    const res = await post(app, "/login", stream, FORM);
    assert.equal(res.status, 413);
    assert.match(await res.text(), /提交的内容过大（不能超过64KB）/);
    assert.ok(seen.pulled <= FORM_BODY_LIMIT + 2 * CHUNK, `pulled ${seen.pulled} bytes`);
    assert.ok(seen.cancelled, "the client's stream is cancelled, not left to be read");
  } finally {
    await h.close();
  }
});

Deno.test("an unauthenticated 400 MB POST is refused on its Content-Length before the CSRF check reads it", async () => {
  const { h, app } = await setupApp();
  try {
    const { stream, seen } = streamedBody(400 * MB);
    const res = await post(app, "/login", stream, {
      ...FORM,
      "content-length": String(400 * MB),
    });
    assert.equal(res.status, 413);
    await res.body?.cancel();
    assert.equal(seen.pulled, 0, "nothing of the body was read");
    assert.ok(seen.cancelled);
  } finally {
    await h.close();
  }
});

Deno.test("a body longer than its Content-Length claims is cut at the limit", async () => {
  const { h, app } = await setupApp();
  try {
    const { stream, seen } = streamedBody(200 * MB);
    const res = await post(app, "/login", stream, { ...FORM, "content-length": "100" });
    assert.equal(res.status, 413);
    await res.body?.cancel();
    assert.ok(seen.pulled <= FORM_BODY_LIMIT + 2 * CHUNK, `pulled ${seen.pulled} bytes`);
    assert.ok(seen.cancelled);
  } finally {
    await h.close();
  }
});

Deno.test("over a real socket, a chunked 200 MB POST is answered 413 and the connection dropped early", async () => {
  const { h, app } = await setupApp();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => app.fetch(req, { remoteAddr: info.remoteAddr }),
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const head = "POST /login HTTP/1.1\r\nHost: localhost\r\n" +
      "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    const enc = new TextEncoder();
    const chunk = enc.encode(`${CHUNK.toString(16)}\r\n${"a".repeat(CHUNK)}\r\n`);
    let answer = "";
    const reading = (async () => {
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return;
        answer += new TextDecoder().decode(buf.subarray(0, n));
      }
    })();
    let sent = 0;
    await conn.write(enc.encode(head));
    try {
      while (sent < 200 * MB && !answer) {
        await conn.write(chunk);
        sent += CHUNK;
      }
    } catch {
      // The server closed the connection: what a refused client should see.
    }
    await reading;
    conn.close();
    assert.match(answer, /^HTTP\/1\.1 413/);
    // What the kernel's socket buffers took in before the answer, far from the 200 MB offered.
    assert.ok(sent < 32 * MB, `sent ${sent} bytes before the server answered`);
  } finally {
    await server.shutdown();
    await h.close();
  }
});

Deno.test("a refused body gets a fragment for htmx and a page otherwise, both in Chinese", async () => {
  const { h, app } = await setupApp();
  try {
    const big = { ...FORM, "content-length": String(FORM_BODY_LIMIT + 1) };
    const page = await post(app, "/register", streamedBody(FORM_BODY_LIMIT + 1).stream, big);
    const pageText = await page.text();
    assert.equal(page.status, 413);
    assert.match(pageText, /<html/);
    assert.match(pageText, /提交的内容过大/);
    const fragment = await post(app, "/register", streamedBody(FORM_BODY_LIMIT + 1).stream, {
      ...big,
      "hx-request": "true",
    });
    const fragmentText = await fragment.text();
    assert.equal(fragment.status, 413);
    assert.doesNotMatch(fragmentText, /<html/);
    assert.match(fragmentText, /提交的内容过大/);
  } finally {
    await h.close();
  }
});

Deno.test("a gateway notify is limited before its body is read", async () => {
  const { h, app } = await setupApp();
  try {
    const { stream, seen } = streamedBody(200 * MB);
    const res = await post(app, "/pay/notify/sandbox", stream, {
      "content-type": "application/json",
    });
    assert.equal(res.status, 413);
    await res.body?.cancel();
    assert.ok(seen.pulled <= FORM_BODY_LIMIT + 2 * CHUNK, `pulled ${seen.pulled} bytes`);
  } finally {
    await h.close();
  }
});

/** A multipart upload body of about `size` bytes with the staff client's cookies and token. */
async function uploadRequest(c: TestClient, path: string, size: number): Promise<Request> {
  const form = new FormData();
  form.set("_csrf", await csrfFor(c.config, c.cookies, true));
  form.set("file", new File([new Uint8Array(size).fill(0x41)], "big.csv", { type: "text/csv" }));
  return new Request(`http://localhost:8000${path}`, {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  });
}

Deno.test("upload forms take files up to the upload limit and no more", async () => {
  const ctx = await setupApp();
  try {
    const { client } = await makeStaff(ctx, "limits-office", [ROLES.cardOffice, ROLES.finance]);
    const env = socket(client.ip);
    // Over the form limit, under the upload limit: the handler's own file rule answers.
    const fits = await ctx.app.request(
      await uploadRequest(client, "/admin/cards/import", 2 * MB),
      undefined,
      env,
    );
    assert.equal(fits.status, 422, "the import form itself judges a 2 MB file");
    await fits.body?.cancel();
    const over = await ctx.app.request(
      await uploadRequest(client, "/admin/finance/reconcile", UPLOAD_BODY_LIMIT),
      undefined,
      env,
    );
    assert.equal(over.status, 413);
    assert.match(await over.text(), /不能超过20MB/);
    // Any other form keeps the form limit.
    const elsewhere = await ctx.app.request(
      await uploadRequest(client, "/admin/password", 2 * MB),
      undefined,
      env,
    );
    assert.equal(elsewhere.status, 413);
    await elsewhere.body?.cancel();
  } finally {
    await ctx.h.close();
  }
});

Deno.test("an upload without a staff session is refused before its body is parsed", async () => {
  const { h, app } = await setupApp();
  try {
    const { stream, seen } = streamedBody(15 * MB);
    const res = await post(app, "/admin/cards/import", stream, {
      "content-type": "multipart/form-data; boundary=x",
      "content-length": String(15 * MB),
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    assert.ok(seen.pulled <= CHUNK, `pulled ${seen.pulled} bytes`);
  } finally {
    await h.close();
  }
});

Deno.test("every upload form posts to a path with the upload limit, and each such path is a route", async () => {
  const { h, app } = await setupApp();
  try {
    const actions = new Set<string>();
    for await (const file of walk(new URL("../../views/", import.meta.url))) {
      const text = await Deno.readTextFile(file);
      for (const form of text.matchAll(/<form\b[^>]*multipart\/form-data[^>]*>/g)) {
        const action = /action="([^"]+)"/.exec(form[0])?.[1];
        assert.ok(action, `${file}: an upload form without a fixed action`);
        actions.add(action);
      }
    }
    assert.ok(actions.size >= 3, "the import and statement forms were found");
    for (const a of actions) assert.ok(UPLOAD_PATHS.includes(a), `${a} is not in UPLOAD_PATHS`);
    const posts = new Set(routesOf(app).filter((r) => r.method === "POST").map((r) => r.path));
    for (const p of UPLOAD_PATHS) assert.ok(posts.has(p), `${p} is not a POST route`);
  } finally {
    await h.close();
  }
});

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* walk(url);
    else if (e.name.endsWith(".eta")) yield url;
  }
}

const METRICS_TOKEN = "metrics-token-0123456789abcdef";

async function scrape(
  app: { request: TestClient["app"]["request"] },
  ip: string | null,
  headers: Record<string, string> = {},
): Promise<Response> {
  return await app.request(
    "http://localhost:8000/metrics",
    { headers },
    ip ? socket(ip) : undefined,
  );
}

Deno.test("/metrics answers this host only, not other hosts or requests through a proxy", async () => {
  const { h, app } = await setupApp();
  try {
    const local = await scrape(app, "127.0.0.1");
    assert.equal(local.status, 200);
    assert.match(await local.text(), /yxt_http_requests_total/);
    assert.equal((await scrape(app, "::1")).status, 200);
    for (
      const [ip, headers] of [
        ["203.0.113.9", {}],
        ["10.0.0.2", {}],
        ["127.0.0.1", { "x-forwarded-for": "203.0.113.9" }],
        ["127.0.0.1", { "x-real-ip": "203.0.113.9" }],
        ["::1", { forwarded: "for=203.0.113.9" }],
        [null, {}],
      ] as Array<[string | null, Record<string, string>]>
    ) {
      const res = await scrape(app, ip, headers);
      assert.equal(res.status, 403, `${ip} ${JSON.stringify(headers)}`);
      assert.doesNotMatch(await res.text(), /yxt_/);
    }
  } finally {
    await h.close();
  }
});

Deno.test("with METRICS_TOKEN, /metrics answers other hosts that bear the token", async () => {
  const ctx = await setupApp({ env: { ...testConfig().env, METRICS_TOKEN } });
  try {
    const ok = await scrape(ctx.app, "203.0.113.9", { authorization: `Bearer ${METRICS_TOKEN}` });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /yxt_http_requests_total/);
    const proxied = await scrape(ctx.app, "127.0.0.1", {
      authorization: `Bearer ${METRICS_TOKEN}`,
      "x-forwarded-for": "203.0.113.9",
    });
    assert.equal(proxied.status, 200);
    await proxied.body?.cancel();
    for (
      const auth of [undefined, `Bearer ${METRICS_TOKEN}x`, `Bearer ${METRICS_TOKEN.slice(1)}`]
    ) {
      const res = await scrape(ctx.app, "203.0.113.9", auth ? { authorization: auth } : {});
      assert.equal(res.status, 401, String(auth));
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="metrics"');
      assert.doesNotMatch(await res.text(), /yxt_/);
    }
    const local = await scrape(ctx.app, "127.0.0.1");
    assert.equal(local.status, 200, "this host needs no token");
    await local.body?.cancel();
    assert.throws(
      () =>
        createApp({
          db: ctx.db,
          config: testConfig({ env: { ...testConfig().env, METRICS_TOKEN: "short" } }),
          onShutdown: () => {},
        }),
      /METRICS_TOKEN must be at least/,
    );
  } finally {
    await ctx.h.close();
  }
});

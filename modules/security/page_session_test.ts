import assert from "node:assert/strict";
import type { Context } from "hono";
import { sql } from "kysely";
import { loadAssets } from "../platform/assets.ts";
import { sha256Hex } from "../platform/crypto.ts";
import type { Db } from "../platform/database.ts";
import { type AppEnv, createBaseApp } from "../platform/http.ts";
import { createTestDatabase, csrfFor, TestClient, testConfig } from "../platform/testing.ts";
import { requireStudent, sendToSignIn, sessionMiddleware } from "./middleware.ts";
import { checkSessionInPageQuery, studentPageQuery } from "./page_session.ts";
import { createSession, destroySessionsOf, STUDENT_SESSION } from "./sessions.ts";

/** A bare app with one page that checks the session in its statement and one that does not. */
function pageApp(db: Db) {
  const config = testConfig();
  const app = createBaseApp({ db });
  app.use("*", sessionMiddleware({ db, config }));
  checkSessionInPageQuery("/t/page");
  const handler = async (c: Context<AppEnv>) => {
    const row = await studentPageQuery(
      c,
      db,
      (accountId) =>
        sql<{ acct: number; other: number }>`select ${accountId}::bigint as acct,
        (select count(*) from sessions where subject_id = ${accountId})::int as other
        where ${accountId} <> 404`,
    );
    if (!row) return sendToSignIn(c);
    return c.json({
      row,
      accountId: c.get("accountId"),
      sessionId: c.get("sessionId"),
      csrf: c.get("csrf"),
    });
  };
  app.get("/t/page", handler);
  app.get("/t/checked", requireStudent, handler);
  return { app, config };
}

async function signedIn(db: Db, app: ReturnType<typeof pageApp>, subject = 7) {
  const token = await createSession(db, "student", subject, { policy: STUDENT_SESSION });
  const client = new TestClient(app.app, app.config);
  client.cookies.set("yxt_sid", token);
  return { token, client, id: await sha256Hex(token) };
}

async function setTimes(
  db: Db,
  id: string,
  times: { lastSeen?: number; idle?: number; absolute?: number },
) {
  const now = Date.now();
  await db.updateTable("sessions").set({
    ...(times.lastSeen !== undefined ? { last_seen_at: new Date(now + times.lastSeen) } : {}),
    ...(times.idle !== undefined ? { idle_expires_at: new Date(now + times.idle) } : {}),
    ...(times.absolute !== undefined
      ? { absolute_expires_at: new Date(now + times.absolute) }
      : {}),
  }).where("id", "=", id).execute();
}

async function sessionRow(db: Db, id: string) {
  return await db.selectFrom("sessions").selectAll().where("id", "=", id).executeTakeFirst();
}

Deno.test("a page checking the session in its statement sees the same student, session and CSRF token as the middleware gives", async () => {
  const h = await createTestDatabase();
  try {
    const t = pageApp(h.db);
    const s = await signedIn(h.db, t);
    for (const path of ["/t/page", "/t/checked"]) {
      const res = await s.client.get(path);
      assert.equal(res.status, 200, path);
      const body = await res.json();
      assert.deepEqual(body, {
        row: { acct: 7, other: 1 },
        accountId: 7,
        sessionId: s.id,
        csrf: await csrfFor(t.config, s.client.cookies),
      }, path);
    }
    // The page's own subquery may yield nothing: the student is still signed in.
    const nothing = await signedIn(h.db, t, 404);
    for (const path of ["/t/page", "/t/checked"]) {
      const res = await nothing.client.get(path);
      assert.deepEqual((await res.json()).row, { acct: null, other: null }, path);
    }
    // No cookie, or a cookie that cannot be a token: sent to sign in.
    const anon = new TestClient(t.app, t.config);
    assert.equal((await anon.get("/t/page")).status, 303);
    anon.cookies.set("yxt_sid", "x".repeat(42));
    const bad = await anon.get("/t/page");
    assert.equal(bad.status, 303);
    assert.equal(bad.headers.get("location"), "/login?next=%2Ft%2Fpage");
    const hx = await anon.get("/t/page", { "hx-request": "true" });
    assert.equal(hx.status, 204);
    assert.equal(hx.headers.get("hx-redirect"), "/login?next=%2Ft%2Fpage");
  } finally {
    await h.close();
  }
});

Deno.test("the in-statement check touches at most once a minute, from now, never past the absolute expiry", async () => {
  const h = await createTestDatabase();
  try {
    const t = pageApp(h.db);
    const s = await signedIn(h.db, t);
    await setTimes(h.db, s.id, { lastSeen: -10_000, idle: 3_600_000 });
    const before = await sessionRow(h.db, s.id);
    assert.equal((await s.client.get("/t/page")).status, 200);
    const same = await sessionRow(h.db, s.id);
    assert.equal(same!.idle_expires_at.getTime(), before!.idle_expires_at.getTime());
    assert.equal(same!.last_seen_at.getTime(), before!.last_seen_at.getTime());

    await setTimes(h.db, s.id, { lastSeen: -120_000, idle: 3_600_000 });
    assert.equal((await s.client.get("/t/page")).status, 200);
    const touched = await sessionRow(h.db, s.id);
    assert.ok(Math.abs(touched!.last_seen_at.getTime() - Date.now()) < 5_000);
    assert.ok(
      Math.abs(
        touched!.idle_expires_at.getTime() - (Date.now() + STUDENT_SESSION.idleSeconds * 1000),
      ) < 5_000,
    );

    await setTimes(h.db, s.id, { lastSeen: -120_000, idle: 3_600_000, absolute: 7_200_000 });
    assert.equal((await s.client.get("/t/page")).status, 200);
    const capped = await sessionRow(h.db, s.id);
    assert.equal(capped!.idle_expires_at.getTime(), capped!.absolute_expires_at.getTime());
  } finally {
    await h.close();
  }
});

Deno.test("the in-statement check refuses expired and ended sessions at once", async () => {
  const h = await createTestDatabase();
  try {
    const t = pageApp(h.db);
    const idle = await signedIn(h.db, t);
    await setTimes(h.db, idle.id, { lastSeen: -8 * 86_400_000, idle: -1_000 });
    assert.equal((await idle.client.get("/t/page")).status, 303);
    assert.equal(await sessionRow(h.db, idle.id), undefined, "the expired row is deleted");

    const old = await signedIn(h.db, t);
    await setTimes(h.db, old.id, { lastSeen: -1_000, idle: 600_000, absolute: -1_000 });
    assert.equal((await old.client.get("/t/page")).status, 303);
    assert.equal(await sessionRow(h.db, old.id), undefined);

    const a = await signedIn(h.db, t, 9);
    const b = await signedIn(h.db, t, 9);
    assert.equal((await a.client.get("/t/page")).status, 200);
    assert.equal((await b.client.get("/t/page")).status, 200);
    // A password change ends the other sessions: the very next view is refused.
    await destroySessionsOf(h.db, "student", 9, a.id);
    assert.equal((await a.client.get("/t/page")).status, 200);
    assert.equal((await b.client.get("/t/page")).status, 303);
    await destroySessionsOf(h.db, "student", 9);
    assert.equal((await a.client.get("/t/page")).status, 303);
  } finally {
    await h.close();
  }
});

Deno.test("a POST that checks the session in its statement still needs its CSRF token, and the middleware leaves the session to it", async () => {
  const h = await createTestDatabase();
  try {
    await loadAssets(); // the 403 page's layout
    const config = testConfig();
    const app = createBaseApp({ db: h.db });
    app.use("*", sessionMiddleware({ db: h.db, config }));
    checkSessionInPageQuery("/t/post", "POST");
    app.post("/t/post", async (c) => {
      // Set only by the middleware's own lookup, which this path is left without.
      const before = c.get("accountId");
      const row = await studentPageQuery(
        c,
        h.db,
        (a) => sql<{ acct: number }>`select ${a} as acct`,
      );
      if (!row) return sendToSignIn(c);
      return c.json({ before, acct: Number(row.acct), accountId: c.get("accountId") });
    });
    const client = new TestClient(app, config);
    client.cookies.set(
      "yxt_sid",
      await createSession(h.db, "student", 7, { policy: STUDENT_SESSION }),
    );
    const ok = await client.post("/t/post");
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { before: null, acct: 7, accountId: 7 });
    assert.equal((await client.post("/t/post", {}, { csrf: false })).status, 403);
    // A session ended elsewhere: the statement refuses it, and the request changes nothing.
    await destroySessionsOf(h.db, "student", 7);
    const ended = await client.post("/t/post", {}, { headers: { "hx-request": "true" } });
    assert.equal(ended.status, 204);
    assert.equal(ended.headers.get("hx-redirect"), "/login?next=%2F");
  } finally {
    await h.close();
  }
});

import assert from "node:assert/strict";
import { sha256Hex } from "../platform/crypto.ts";
import type { Db } from "../platform/database.ts";
import { createTestDatabase } from "../platform/testing.ts";
import {
  createSession,
  destroySession,
  destroySessionsOf,
  findSession,
  STAFF_SESSION,
  STUDENT_SESSION,
} from "./sessions.ts";

const DAY = 86_400_000;

async function row(db: Db, token: string) {
  return await db.selectFrom("sessions").selectAll().where("id", "=", await sha256Hex(token))
    .executeTakeFirst();
}

async function setTimes(
  db: Db,
  token: string,
  times: { lastSeen?: number; idle?: number; absolute?: number },
) {
  const now = Date.now();
  await db.updateTable("sessions").set({
    ...(times.lastSeen !== undefined ? { last_seen_at: new Date(now + times.lastSeen) } : {}),
    ...(times.idle !== undefined ? { idle_expires_at: new Date(now + times.idle) } : {}),
    ...(times.absolute !== undefined
      ? { absolute_expires_at: new Date(now + times.absolute) }
      : {}),
  }).where("id", "=", await sha256Hex(token)).execute();
}

function near(actual: Date, expected: number, slackMs = 5_000) {
  assert.ok(
    Math.abs(actual.getTime() - expected) <= slackMs,
    `${actual.toISOString()} is not within ${slackMs} ms of ${new Date(expected).toISOString()}`,
  );
}

Deno.test("a session is touched at most once a minute, extending the idle expiry from now up to the absolute one", async () => {
  const h = await createTestDatabase();
  try {
    const token = await createSession(h.db, "student", 7, { policy: STUDENT_SESSION });
    const found = await findSession(h.db, token, "student", STUDENT_SESSION);
    assert.deepEqual(found, { id: await sha256Hex(token), kind: "student", subjectId: 7 });

    // Seen 10 s ago: no write, the idle expiry stays where it was.
    await setTimes(h.db, token, { lastSeen: -10_000, idle: 3_600_000 });
    const before = await row(h.db, token);
    assert.ok(await findSession(h.db, token, "student", STUDENT_SESSION));
    const unchanged = await row(h.db, token);
    assert.equal(unchanged!.idle_expires_at.getTime(), before!.idle_expires_at.getTime());
    assert.equal(unchanged!.last_seen_at.getTime(), before!.last_seen_at.getTime());

    // Seen 2 minutes ago: the use extends the idle expiry to a full idle period from now.
    await setTimes(h.db, token, { lastSeen: -120_000, idle: 3_600_000 });
    assert.ok(await findSession(h.db, token, "student", STUDENT_SESSION));
    const touched = await row(h.db, token);
    near(touched!.last_seen_at, Date.now());
    near(touched!.idle_expires_at, Date.now() + STUDENT_SESSION.idleSeconds * 1000);

    // Never past the absolute expiry.
    await setTimes(h.db, token, { lastSeen: -120_000, idle: 3_600_000, absolute: 2 * 3_600_000 });
    assert.ok(await findSession(h.db, token, "student", STUDENT_SESSION));
    const capped = await row(h.db, token);
    assert.equal(capped!.idle_expires_at.getTime(), capped!.absolute_expires_at.getTime());
  } finally {
    await h.close();
  }
});

Deno.test("an idle or absolutely expired session is refused and deleted", async () => {
  const h = await createTestDatabase();
  try {
    const idle = await createSession(h.db, "student", 7, { policy: STUDENT_SESSION });
    await setTimes(h.db, idle, { lastSeen: -8 * DAY, idle: -1_000 });
    assert.equal(await findSession(h.db, idle, "student", STUDENT_SESSION), null);
    assert.equal(await row(h.db, idle), undefined);

    const old = await createSession(h.db, "staff", 3, { policy: STAFF_SESSION });
    // Used a second ago (idle far off) but past its absolute end.
    await setTimes(h.db, old, { lastSeen: -1_000, idle: 600_000, absolute: -1_000 });
    assert.equal(await findSession(h.db, old, "staff", STAFF_SESSION), null);
    assert.equal(await row(h.db, old), undefined);
  } finally {
    await h.close();
  }
});

Deno.test("sign-out and a password change end sessions at once; a token of another kind or shape finds nothing", async () => {
  const h = await createTestDatabase();
  try {
    const a = await createSession(h.db, "student", 7, { policy: STUDENT_SESSION });
    const b = await createSession(h.db, "student", 7, { policy: STUDENT_SESSION });
    const c = await createSession(h.db, "student", 7, { policy: STUDENT_SESSION });
    const other = await createSession(h.db, "student", 8, { policy: STUDENT_SESSION });
    for (const t of [a, b, c, other]) {
      assert.ok(await findSession(h.db, t, "student", STUDENT_SESSION));
    }
    assert.equal(await findSession(h.db, a, "staff", STAFF_SESSION), null);
    assert.equal(await findSession(h.db, a.slice(1), "student", STUDENT_SESSION), null);

    await destroySession(h.db, await sha256Hex(a));
    assert.equal(await findSession(h.db, a, "student", STUDENT_SESSION), null);

    // A password change keeps the session it was made in and ends the others of that account.
    await destroySessionsOf(h.db, "student", 7, await sha256Hex(b));
    assert.ok(await findSession(h.db, b, "student", STUDENT_SESSION));
    assert.equal(await findSession(h.db, c, "student", STUDENT_SESSION), null);
    assert.ok(await findSession(h.db, other, "student", STUDENT_SESSION));
  } finally {
    await h.close();
  }
});

/**
 * The bench's web sections: wrk on the 余额 page and the 付款码 refresh in interleaved pairs with
 * a bare Hono route, and the pages' weight and the QR code on Regular 3G in Chromium.
 */
import { fmt, verdict } from "./_lib.ts";
import { cpuBetween } from "./_cpu.ts";
import { wrk, type WrkResult } from "./_wrk.ts";
import { coldLoadWeight, launchChromium, timeUntilVisible } from "./_browser.ts";
import { type Bench, cpuCells, type Measured, TABLES } from "./_bench.ts";
import {
  allOf,
  atLeast,
  atMost,
  decisionText,
  ratioSpreadText,
  spread,
  spreadText,
} from "./_stats.ts";

type Page = "hello" | "wallet" | "refresh";

/** What each HTTP load asks for, and its target (issue 7 for 余额, issue 20 for the refresh). */
const PAGES = {
  wallet: { name: "余额 /wallet", cpuName: "余额 page (/wallet)", perSecond: 3000 },
  refresh: { name: "付款码 refresh", cpuName: "付款码 refresh", perSecond: 2000 },
};

export async function httpSection(b: Bench): Promise<void> {
  const { report, meter, students, settings } = b;
  const s = b.server!;
  if (!students.length) throw new Error("no signed-in students (see the fixtures row)");
  const conns = 64;
  const load = {
    hello: { url: `${s.url}/__bench/hello` },
    wallet: {
      url: `${s.url}/wallet`,
      sessions: students.map((st) => ({ cookie: st.cookieHeader })),
    },
    refresh: {
      url: `${s.url}/pay/code/refresh`,
      method: "POST" as const,
      sessions: students.map((st) => ({
        cookie: st.cookieHeader,
        "hx-request": "true",
        "x-csrf-token": st.csrf,
      })),
    },
  };
  const slice = async (page: Page, seconds: number): Promise<Measured<WrkResult>> => {
    const a = await meter.sample();
    const r = await wrk(load[page].url, { connections: conns, seconds, ...load[page] });
    const c = cpuBetween(a, await meter.sample());
    if (page === "hello" && r.errors) {
      throw new Error(`hello route answered ${r.errors} errors: is BENCH_HELLO wired in main.ts?`);
    }
    return { r, cpu: c, ops: r.requests };
  };
  for (const page of ["hello", "wallet", "refresh"] as const) await slice(page, 1);
  const pairs = {
    wallet: [] as Array<{ hello: Measured<WrkResult>; ours: Measured<WrkResult> }>,
    refresh: [] as Array<{ hello: Measured<WrkResult>; ours: Measured<WrkResult> }>,
  };
  for (let i = 0; i < settings.pairs; i++) {
    for (const page of ["wallet", "refresh"] as const) {
      const hello = await slice("hello", settings.seconds);
      pairs[page].push({ hello, ours: await slice(page, settings.seconds) });
    }
  }
  const hellos = [...pairs.wallet, ...pairs.refresh].map((p) => p.hello);
  const rps = (ws: Measured<WrkResult>[]) => spread(ws.map((w) => w.r.requestsPerSecond));
  const p99 = (ws: Measured<WrkResult>[]) => spread(ws.map((w) => w.r.p99Ms));
  const value = (ws: Measured<WrkResult>[]) => {
    const errors = ws.reduce((a, w) => a + w.r.errors, 0);
    return `${spreadText(rps(ws))} req/s, p50 ${
      spreadText(spread(ws.map((w) => w.r.p50Ms)), 1)
    } ms, p99 ${spreadText(p99(ws), 1)} ms${errors ? `, ${errors} errors` : ""}`;
  };
  report.add({
    section: "HTTP",
    figure: "bare Hono hello",
    value: value(hellos),
    verdict: "reference",
  });
  for (const page of ["wallet", "refresh"] as const) {
    const ours = pairs[page].map((p) => p.ours);
    const errors = ours.reduce((a, w) => a + w.r.errors, 0);
    const d = allOf(
      atLeast(rps(ours), PAGES[page].perSecond),
      atMost(p99(ours), 50),
      errors ? "missed" : "met",
    );
    const ratio = spread(
      pairs[page].map((p) => p.ours.r.requestsPerSecond / p.hello.r.requestsPerSecond),
    );
    report.add({
      section: "HTTP",
      figure: PAGES[page].name,
      value: value(ours),
      target: `≥ ${fmt(PAGES[page].perSecond)} req/s, p99 ≤ 50 ms`,
      verdict: `${decisionText(d)}; ${ratioSpreadText(ratio)} hello`,
    });
    report.tableRow(TABLES.cpu, [
      PAGES[page].cpuName,
      `wrk, ${conns} connections`,
      ...cpuCells(ours).cells,
      "",
      "",
      "",
    ]);
  }
  report.tableRow(TABLES.cpu, [
    "bare Hono hello",
    `wrk, ${conns} connections`,
    ...cpuCells(hellos).cells,
    "",
    "",
    "",
  ]);
  report.note(
    `HTTP: wrk -t2 -c${conns}, ${settings.pairs} pairs of ${settings.seconds} s slices (hello, then the page) after a 1 s warm-up of each, on the same 2-core machine as the server and PostgreSQL, requests rotating over ${students.length} signed-in students; 付款码 refresh is the htmx POST /pay/code/refresh (a new code per request, retiring the old one). The 付款码 refresh target is issue 20's.`,
  );
}

/** Issue 16: the three student pages a student opens most stay within 30 KB; /login within 40. */
export const PAGE_PATHS = ["/login", "/", "/pay/code", "/wallet/transactions"];
const budgetKb = (path: string) => path === "/login" ? 40 : 30;

export async function pagesSection(b: Bench): Promise<void> {
  const { report } = b;
  const server = b.server!;
  const student = b.students[0];
  const browser = await launchChromium();
  try {
    for (const path of PAGE_PATHS) {
      const signedIn = path !== "/login";
      try {
        if (signedIn && !student) throw new Error("no signed-in student (see the fixtures row)");
        const w = await coldLoadWeight(browser, server.url, path, signedIn ? student.cookies : []);
        if (w.finalPath !== path) {
          throw new Error(`${path} ended at ${w.finalPath} (status ${w.status})`);
        }
        if (w.status !== 200) throw new Error(`${path} answered ${w.status}`);
        report.add({
          section: "pages",
          figure: `cold load ${path}`,
          value: `${fmt(w.bytes / 1024, 1)} KB in ${w.requests} requests (largest: ${
            w.largest.map((l) => `${l.url} ${fmt(l.bytes / 1024, 1)} KB`).join(", ")
          })`,
          target: `≤ ${budgetKb(path)} KB`,
          verdict: verdict(w.bytes <= budgetKb(path) * 1024),
        });
      } catch (err) {
        report.notMeasured(
          "pages",
          `cold load ${path}`,
          (err as Error).message,
          `≤ ${budgetKb(path)} KB`,
        );
      }
    }
    if (!student) throw new Error("no signed-in student (see the fixtures row)");
    const t = await timeUntilVisible(
      browser,
      server.url,
      "/pay/code",
      ".paycode__qr svg",
      student.cookies,
    );
    if (t.finalPath !== "/pay/code") throw new Error(`/pay/code ended at ${t.finalPath}`);
    report.add({
      section: "pages",
      figure: "付款码 QR visible, Regular 3G",
      value: `${fmt(t.ms)} ms`,
      target: "≤ 1,500 ms",
      verdict: verdict(t.ms <= 1500),
    });
  } finally {
    await browser.close();
  }
  report.note(
    "Pages: headless Chromium, fresh context per load (cold cache); bytes are DevTools' encodedDataLength (headers + compressed bodies) of every request until the load event plus 1.5 s (for a request still open, such as the 付款码 long poll, the bytes received so far). QR: DevTools Regular 3G (750 kbit/s down, 250 kbit/s up, 100 ms), time from navigation start until the QR element has a size on screen.",
  );
}

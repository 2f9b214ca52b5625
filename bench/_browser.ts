/**
 * Page weight and speed in real Chromium (playwright-core + the DevTools protocol): compressed
 * bytes of a cold load, and the time until the payment QR code is visible on a slow network.
 */
import { type Browser, chromium } from "playwright-core";

/** The flags every browser of the bench starts with: no background traffic to skew the bytes. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** DevTools' "Regular 3G" preset: 750 kbit/s down, 250 kbit/s up, 100 ms latency. */
export const REGULAR_3G = {
  offline: false,
  latency: 100,
  downloadThroughput: (750 * 1024) / 8,
  uploadThroughput: (250 * 1024) / 8,
};

/** Starts headless Chromium from Debian's package. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
  });
}

/** A cookie to set before loading (a signed-in session). */
export interface SessionCookie {
  name: string;
  value: string;
}

/** The little of the DOM the page-side check uses (the bench is type-checked without lib.dom). */
interface PageDocument {
  querySelector(
    selector: string,
  ): { getBoundingClientRect(): { width: number; height: number } } | null;
}

/** Bytes on the wire for one cold page load. */
export interface PageWeight {
  path: string;
  status: number;
  finalPath: string;
  /** Sum of encodedDataLength over every request: headers and compressed bodies. */
  bytes: number;
  requests: number;
  /** The largest responses, for the notes. */
  largest: Array<{ url: string; bytes: number }>;
}

/**
 * Loads `path` in a fresh browser context (empty cache) and adds up the bytes received for the
 * document and everything it pulls in until the network is idle.
 */
export async function coldLoadWeight(
  browser: Browser,
  baseUrl: string,
  path: string,
  cookies: SessionCookie[] = [],
): Promise<PageWeight> {
  const context = await browser.newContext({ locale: "zh-CN" });
  try {
    if (cookies.length) {
      await context.addCookies(cookies.map((c) => ({ ...c, url: baseUrl })));
    }
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    const urls = new Map<string, string>();
    const sizes = new Map<string, number>();
    cdp.on("Network.requestWillBeSent", (e) => urls.set(e.requestId, e.request.url));
    // Bytes so far for requests still open (the 付款码 page's long poll), exact once finished.
    cdp.on(
      "Network.responseReceived",
      (e) => sizes.set(e.requestId, e.response.encodedDataLength ?? 0),
    );
    cdp.on(
      "Network.dataReceived",
      (e) => sizes.set(e.requestId, (sizes.get(e.requestId) ?? 0) + e.encodedDataLength),
    );
    cdp.on("Network.loadingFinished", (e) => sizes.set(e.requestId, e.encodedDataLength));
    // Not "networkidle": a page holding a long poll open never goes idle. Load, then a settle.
    const res = await page.goto(baseUrl + path, { waitUntil: "load", timeout: 60_000 });
    await page.waitForTimeout(1500);
    const bytes = [...sizes.values()].reduce((a, b) => a + b, 0);
    const largest = [...sizes].map(([id, b]) => ({ url: urls.get(id) ?? id, bytes: b }))
      .sort((a, b) => b.bytes - a.bytes).slice(0, 3)
      .map((x) => ({ ...x, url: x.url.replace(baseUrl, "") }));
    return {
      path,
      status: res?.status() ?? 0,
      finalPath: new URL(page.url()).pathname,
      bytes,
      requests: sizes.size,
      largest,
    };
  } finally {
    await context.close();
  }
}

/**
 * Opens `path` cold under Regular 3G and returns the milliseconds from navigation start until
 * an element matching `selector` has a size on screen (measured by the page's own clock).
 */
export async function timeUntilVisible(
  browser: Browser,
  baseUrl: string,
  path: string,
  selector: string,
  cookies: SessionCookie[] = [],
): Promise<{ ms: number; finalPath: string }> {
  const context = await browser.newContext({
    locale: "zh-CN",
    viewport: { width: 390, height: 844 },
  });
  try {
    if (cookies.length) await context.addCookies(cookies.map((c) => ({ ...c, url: baseUrl })));
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
    await cdp.send("Network.emulateNetworkConditions", REGULAR_3G);
    // Polling starts once the document is committed; the page's clock starts at navigation, so
    // a late first poll can only overstate the time, never understate it.
    await page.goto(baseUrl + path, { waitUntil: "commit", timeout: 30_000 });
    const visible = await page.waitForFunction(
      (sel: string) => {
        // Runs in the page, where `document` exists.
        const doc = (globalThis as unknown as { document: PageDocument }).document;
        const el = doc.querySelector(sel);
        if (!el) return false;
        const r = el.getBoundingClientRect();
        return r.width > 0 && r.height > 0 ? performance.now() : false;
      },
      selector,
      { polling: "raf", timeout: 30_000 },
    );
    const ms = Number(await visible.jsonValue());
    return { ms, finalPath: new URL(page.url()).pathname };
  } finally {
    await context.close();
  }
}

// 一信通's service worker: when a page cannot load (no network), our own 网络不可用 page instead of
// the browser's error screen, and for 付款码 the 离线付款码 shell, whose script computes the
// phone's offline code (docs/OFFLINE_PAYMENT_CODES.md). It caches only the shell (those two pages,
// which hold nothing of anyone's, their stylesheet, scripts and icon), never a page's answer:
// 余额, 交易记录 and 付款码 always come from the server or not at all.
"use strict";
const CACHE = "yxt-shell-" + new URL(self.location.href).searchParams.get("v");
const OFFLINE = "/offline";
const PAY_OFFLINE = "/pay/code/offline";

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    const assets = [];
    for (const page of [OFFLINE, PAY_OFFLINE]) {
      const res = await fetch(page, { cache: "no-store", credentials: "omit" });
      if (!res.ok) throw new Error(page + ": " + res.status);
      const html = await res.clone().text();
      for (const m of html.matchAll(/(?:href|src)="(\/static\/[^"]+)"/g)) {
        assets.push(m[1].replaceAll("&amp;", "&"));
      }
      await cache.put(page, res);
    }
    await cache.addAll([...new Set(assets)]);
    // No skipWaiting: a new release's worker waits until no page uses the old one. Forced in,
    // it stops the old worker even while that one is answering a navigation, and Chromium leaves
    // that navigation hanging (the page never loads).
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === "navigate") {
    if (url.pathname.startsWith("/admin")) return;
    // 付款码 without the network: the offline code, where this phone has a device.
    const shell = url.pathname === "/pay/code" ? PAY_OFFLINE : OFFLINE;
    event.respondWith(
      fetch(req).catch(async () => {
        const page = await caches.match(shell, { cacheName: CACHE });
        return page || Response.error();
      }),
    );
  } else if (url.pathname.startsWith("/static/")) {
    // The shell's own files (content-hashed URLs), from the network when they are not cached.
    event.respondWith(caches.match(req, { cacheName: CACHE }).then((hit) => hit || fetch(req)));
  }
});

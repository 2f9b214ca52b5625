// 付款码: keep the result long-poll alive across network hiccups; while the network is gone show
// the 离线付款码 (pay_offline.js) or, where this phone has none, grey the code out (a stale code may
// already be retired); bring a fresh one back by itself when it returns; 查看数字 shows the
// digits; a tap on the code refreshes it (no inline script: CSP).
(function () {
  "use strict";
  let revealed = false;

  // The offline code's scripts come after the page shows. The service worker keeps them (it
  // caches the 离线付款码 shell's files when it installs), so where there is one they are taken from
  // its cache once it controls the page: a first visit does not download them twice. Where there
  // is none (WKWebView), or it never takes over, they come from the network.
  function loadOfflineScripts() {
    const band = document.querySelector("[data-offline-scripts]");
    if (!band || band.hasAttribute("data-loading")) return;
    band.setAttribute("data-loading", "");
    for (const src of band.getAttribute("data-offline-scripts").split(" ")) {
      const s = document.createElement("script");
      s.src = src;
      s.async = false;
      document.head.appendChild(s);
    }
  }
  globalThis.addEventListener("load", function () {
    const sw = navigator.serviceWorker;
    if (!sw || sw.controller) return loadOfflineScripts();
    sw.addEventListener("controllerchange", loadOfflineScripts, { once: true });
    setTimeout(loadOfflineScripts, 15000);
  });
  // A frozen 付款码: this phone forgets its offline device too.
  if (document.querySelector("[data-offline-forget]")) {
    try {
      localStorage.removeItem("yxt.payDevice");
    } catch (_) {
      // No storage: nothing to forget.
    }
  }

  function card() {
    const el = document.getElementById("paycode-card");
    return el && el.hasAttribute("data-paycode") ? el : null;
  }

  function refresh() {
    const el = card();
    if (el) globalThis.htmx.trigger(el, "refresh");
  }

  function setStale(on) {
    const el = card();
    if (!el) return;
    const offline = on && globalThis.yxtOffline && globalThis.yxtOffline.show(el);
    el.classList.toggle("is-stale", on);
    const retry = el.querySelector("[data-retry]");
    if (retry) retry.hidden = !on || !!offline;
    if (offline) showDigits(el);
  }

  // The online code's digits and, while offline, the offline code's.
  function showDigits(el) {
    for (const num of el.querySelectorAll(".paycode__num")) {
      const digits = num.querySelector("[data-digits]");
      const masked = num.querySelector("[data-masked]");
      const btn = num.querySelector("[data-reveal]");
      if (!digits || !masked || !btn) continue;
      digits.hidden = !revealed;
      masked.hidden = revealed;
      btn.textContent = revealed ? "隐藏数字" : "查看数字";
      btn.setAttribute("aria-expanded", String(revealed));
    }
  }

  function isPoll(el) {
    return el && el.hasAttribute && el.hasAttribute("data-pay-poll");
  }

  function failed(e) {
    const el = e.detail && e.detail.elt;
    if (!el || !el.hasAttribute) return;
    // A 4xx (unknown code, signed out) will not get better by asking again.
    const xhr = e.detail.xhr;
    if (e.type === "htmx:responseError" && xhr && xhr.status < 500) return;
    if (el.hasAttribute("data-paycode") || isPoll(el)) setStale(true);
    if (!isPoll(el)) return;
    setTimeout(function () {
      if (document.body.contains(el)) globalThis.htmx.trigger(el, "retry");
    }, 2000);
  }
  document.addEventListener("htmx:sendError", failed);
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:timeout", failed);

  // The long poll got through again while the code was greyed out: the network is back.
  document.addEventListener("htmx:afterRequest", function (e) {
    const el = e.detail && e.detail.elt;
    const c = card();
    if (isPoll(el) && e.detail.successful && c && c.classList.contains("is-stale")) refresh();
  });
  document.addEventListener("htmx:afterSwap", function () {
    const c = card();
    if (c) showDigits(c);
  });

  globalThis.addEventListener("offline", function () {
    setStale(true);
  });
  globalThis.addEventListener("online", refresh);

  document.addEventListener("click", function (e) {
    const t = e.target && e.target.closest ? e.target : null;
    if (!t) return;
    if (t.closest("[data-reveal]")) {
      revealed = !revealed;
      const c = card() || document.getElementById("paycode-card");
      if (c) showDigits(c);
    } else if (t.closest("[data-retry]") || t.closest("[data-refresh-tap]")) {
      refresh();
    }
  });
})();

// 付款码: keep the result long-poll alive across network hiccups, grey the code out while the
// network is gone (a stale code may already be retired) and bring a fresh one back by itself when
// it returns; 查看数字 shows the digits; a tap on the code refreshes it (no inline script: CSP).
(function () {
  "use strict";
  let revealed = false;

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
    el.classList.toggle("is-stale", on);
    const retry = el.querySelector("[data-retry]");
    if (retry) retry.hidden = !on;
  }

  function showDigits(el) {
    const digits = el.querySelector("[data-digits]");
    const masked = el.querySelector("[data-masked]");
    const btn = el.querySelector("[data-reveal]");
    if (!digits || !masked || !btn) return;
    digits.hidden = !revealed;
    masked.hidden = revealed;
    btn.textContent = revealed ? "隐藏数字" : "查看数字";
    btn.setAttribute("aria-expanded", String(revealed));
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
      const c = card();
      if (c) showDigits(c);
    } else if (t.closest("[data-retry]") || t.closest("[data-refresh-tap]")) {
      refresh();
    }
  });
})();

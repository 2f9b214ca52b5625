// 付款码: keep the result long-poll alive across network hiccups (the page has no inline script).
(function () {
  "use strict";
  function retryLater(e) {
    const el = e.detail && e.detail.elt;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-pay-poll")) return;
    // A 4xx (unknown code, signed out) will not get better by asking again.
    const xhr = e.detail.xhr;
    if (e.type === "htmx:responseError" && xhr && xhr.status < 500) return;
    setTimeout(function () {
      if (document.body.contains(el)) globalThis.htmx.trigger(el, "retry");
    }, 2000);
  }
  document.addEventListener("htmx:sendError", retryLater);
  document.addEventListener("htmx:responseError", retryLater);
  document.addEventListener("htmx:timeout", retryLater);
})();

// 一信通 page behaviour. No inline scripts (CSP): pages opt in with data-* attributes.
(function () {
  "use strict";

  // [发送验证码] buttons with data-countdown="60" show a resend countdown after a send.
  function startCountdown(btn, seconds) {
    var label = btn.getAttribute("data-label") || btn.textContent;
    btn.setAttribute("data-label", label);
    btn.disabled = true;
    var left = seconds;
    btn.textContent = left + "秒后重发";
    var timer = setInterval(function () {
      left -= 1;
      if (left <= 0) {
        clearInterval(timer);
        btn.disabled = false;
        btn.textContent = label;
      } else {
        btn.textContent = left + "秒后重发";
      }
    }, 1000);
  }

  function scan(root) {
    var nodes = (root || document).querySelectorAll("[data-countdown-start]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var target = document.getElementById(el.getAttribute("data-countdown-target"));
      var secs = parseInt(el.getAttribute("data-countdown-start"), 10);
      el.removeAttribute("data-countdown-start");
      if (target && secs > 0) startCountdown(target, secs);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    scan(document);
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    scan(e.target);
  });
  document.addEventListener("htmx:oobAfterSwap", function (e) {
    scan(e.target);
  });

  // Forms with data-confirm ask before submitting (plain posts and htmx alike).
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  }, true);
})();

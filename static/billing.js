// 电费充值 / 冷水充值 (quick amounts: quick_amount.js): [确认] is disabled once pressed (the
// form's one-time token makes a second post harmless anyway).
(function () {
  "use strict";

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.hasAttribute || !form.hasAttribute("data-billing-pay") || e.defaultPrevented) return;
    var btn = form.querySelector("button[type=submit]");
    if (btn) {
      btn.disabled = true;
      btn.textContent = "处理中…";
    }
  });
})();

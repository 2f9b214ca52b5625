// 电费充值 / 冷水充值: a quick amount fills [输入金额]; typing another amount clears the choice;
// [确认] is disabled once pressed (the form's one-time token makes a second post harmless anyway).
(function () {
  "use strict";

  document.addEventListener("change", function (e) {
    var el = e.target;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-quick-amount")) return;
    var input = document.getElementById("f-amount");
    if (input) input.value = el.getAttribute("data-quick-amount");
  });

  document.addEventListener("input", function (e) {
    if (!e.target || e.target.id !== "f-amount") return;
    var checked = document.querySelector("input[name=quick]:checked");
    if (checked && checked.value !== e.target.value) checked.checked = false;
  });

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

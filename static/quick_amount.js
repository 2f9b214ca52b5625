// 快捷金额 (充值, 电费充值, 冷水充值): choosing a quick amount fills [输入金额] and tells the page
// (an input event on the field); typing another amount clears the choice.
(function () {
  "use strict";

  document.addEventListener("change", function (e) {
    var el = e.target;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-quick-amount")) return;
    var input = document.getElementById("f-amount");
    if (!input) return;
    input.value = el.getAttribute("data-quick-amount");
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });

  document.addEventListener("input", function (e) {
    if (!e.target || e.target.id !== "f-amount") return;
    var checked = document.querySelector("input[name=quick]:checked");
    if (checked && checked.value !== e.target.value) checked.checked = false;
  });
})();

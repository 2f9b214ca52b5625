// 管理后台 page behaviour (no inline scripts: CSP). Pages opt in with data-* attributes.
(function () {
  "use strict";

  // "/" jumps to the header search (学号/姓名/手机/芯片卡号) from anywhere but a text field.
  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    var box = document.querySelector("[data-shortcut='/']");
    if (!box) return;
    e.preventDefault();
    box.focus();
    box.select();
  });
})();

// 充值 and 代充: [充值] echoes the amount (quick amounts: quick_amount.js); the WeChat page starts
// JSAPI payment in the webview; 请家人代充 copies its link.
(function () {
  "use strict";

  // [充值] echoes the amount it will charge: 充值 ¥50.00.
  function showAmount() {
    const input = document.getElementById("f-amount");
    const out = document.getElementById("topup-amount");
    if (!input || !out) return;
    const v = input.value.trim();
    const ok = /^\d{1,6}(\.\d{1,2})?$/.test(v) && Number(v) > 0;
    out.textContent = ok ? " ¥" + Number(v).toFixed(2) : "";
  }

  document.addEventListener("input", (e) => {
    if (e.target && e.target.id === "f-amount") showAmount();
  });
  document.addEventListener("DOMContentLoaded", showAmount);

  function pay(btn) {
    const params = JSON.parse(btn.getAttribute("data-jsapi"));
    const error = document.getElementById("wxpay-error");
    const bridge = globalThis.WeixinJSBridge;
    if (!bridge) {
      error.textContent = "请在微信中打开本页面完成支付";
      error.hidden = false;
      return;
    }
    bridge.invoke("getBrandWCPayRequest", params, (res) => {
      if (res && res.err_msg === "get_brand_wcpay_request:cancel") {
        error.textContent = "已取消支付";
        error.hidden = false;
        return;
      }
      // Whatever the webview says, the result page asks the server, which waits for the notify.
      globalThis.location.href = btn.getAttribute("data-result");
    });
  }

  // 请家人代充: [复制链接] copies the link (or selects it where the webview will not copy).
  function copy(btn) {
    const input = document.getElementById(btn.getAttribute("data-copy"));
    if (!input) return;
    const done = () => {
      btn.textContent = "已复制";
    };
    input.select();
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(done, () => {});
    } else if (document.execCommand && document.execCommand("copy")) {
      done();
    }
  }

  document.addEventListener("click", (e) => {
    const btn = e.target && e.target.closest ? e.target.closest("#wxpay") : null;
    if (btn) pay(btn);
    const copier = e.target && e.target.closest ? e.target.closest("[data-copy]") : null;
    if (copier) copy(copier);
  });
})();

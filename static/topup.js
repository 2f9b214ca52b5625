// 充值: quick amounts fill [输入金额]; the WeChat page starts JSAPI payment in the webview.
(function () {
  "use strict";

  document.addEventListener("change", (e) => {
    const el = e.target;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-quick-amount")) return;
    const input = document.getElementById("f-amount");
    if (input) input.value = el.getAttribute("data-quick-amount");
  });

  document.addEventListener("input", (e) => {
    if (!e.target || e.target.id !== "f-amount") return;
    const checked = document.querySelector("input[name=quick]:checked");
    if (checked && checked.value !== e.target.value) checked.checked = false;
  });

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

  document.addEventListener("click", (e) => {
    const btn = e.target && e.target.closest ? e.target.closest("#wxpay") : null;
    if (btn) pay(btn);
  });
})();

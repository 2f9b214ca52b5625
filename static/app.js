// 一信通 page behaviour. No inline scripts (CSP): pages opt in with data-* attributes.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

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

  // Forms with data-confirm ask first in an in-page dialog (WeUI), not window.confirm (whose
  // title in WeChat is the site's address). 确定 submits the form again, marked as confirmed.
  function confirmDialog(message, okLabel, onOk) {
    var opener = document.activeElement;
    var wrap = document.createElement("div");
    wrap.className = "dialog-mask";
    var box = document.createElement("div");
    box.className = "dialog";
    box.setAttribute("role", "alertdialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-labelledby", "dialog-msg");
    var text = document.createElement("p");
    text.className = "dialog__bd";
    text.id = "dialog-msg";
    text.textContent = message;
    var ft = document.createElement("div");
    ft.className = "dialog__ft";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "dialog__btn";
    cancel.textContent = "取消";
    var ok = document.createElement("button");
    ok.type = "button";
    ok.className = "dialog__btn dialog__btn--primary";
    ok.textContent = okLabel || "确定";
    ft.appendChild(cancel);
    ft.appendChild(ok);
    box.appendChild(text);
    box.appendChild(ft);
    wrap.appendChild(box);
    function close() {
      document.removeEventListener("keydown", onKey, true);
      wrap.remove();
      if (opener && opener.focus) opener.focus();
    }
    function onKey(e) {
      if (e.key === "Escape") close();
      else if (e.key === "Tab") {
        e.preventDefault();
        (document.activeElement === ok ? cancel : ok).focus();
      }
    }
    cancel.addEventListener("click", close);
    ok.addEventListener("click", function () {
      close();
      onOk();
    });
    document.addEventListener("keydown", onKey, true);
    document.body.appendChild(wrap);
    ok.focus();
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var msg = form.getAttribute && form.getAttribute("data-confirm");
    if (!msg) return;
    if (form.getAttribute("data-confirmed") === "1") {
      form.removeAttribute("data-confirmed");
      return;
    }
    e.preventDefault();
    e.stopImmediatePropagation();
    var submitter = e.submitter || null;
    confirmDialog(msg, form.getAttribute("data-confirm-ok"), function () {
      form.setAttribute("data-confirmed", "1");
      if (form.requestSubmit) form.requestSubmit(submitter);
      else form.submit();
    });
  }, true);

  // Every form's button shows a loading state and is disabled once submitted (a slow network
  // must not take two taps as two requests); a 加载中 toast after 300 ms.
  var toastTimer = null;
  function showToast(on) {
    clearTimeout(toastTimer);
    var t = document.getElementById("loading-toast");
    if (!on) {
      if (t) t.hidden = true;
      return;
    }
    toastTimer = setTimeout(function () {
      if (!t) {
        t = document.createElement("div");
        t.id = "loading-toast";
        t.className = "toast";
        t.setAttribute("role", "status");
        t.innerHTML = '<span class="toast__spin" aria-hidden="true"></span><span>加载中</span>';
        document.body.appendChild(t);
      }
      t.hidden = false;
    }, 300);
  }
  function busy(form, submitter, on) {
    var btns = form.querySelectorAll("button[type=submit], button:not([type])");
    for (var i = 0; i < btns.length; i++) {
      if (on) {
        btns[i].disabled = true;
        btns[i].setAttribute("aria-busy", "true");
      } else if (btns[i].getAttribute("aria-busy") === "true") {
        btns[i].disabled = false;
        btns[i].removeAttribute("aria-busy");
      }
    }
    if (submitter && on) submitter.classList.add("is-loading");
    if (!on) {
      var l = form.querySelectorAll(".is-loading");
      for (var j = 0; j < l.length; j++) l[j].classList.remove("is-loading");
    }
    showToast(on);
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (e.defaultPrevented || form.hasAttribute("data-no-busy")) return;
    var submitter = e.submitter || null;
    // After this event: a disabled submitter would be left out of the form data.
    setTimeout(function () {
      busy(form, submitter, true);
    }, 0);
  });
  // htmx forms stay on the page: the button comes back when the answer has arrived.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var form = e.detail.elt;
    if (form && form.tagName === "FORM" && !form.hasAttribute("data-no-busy")) {
      busy(form, e.detail.requestConfig && e.detail.requestConfig.submitter, true);
    }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (form && form.tagName === "FORM") busy(form, null, false);
  });
  // Back from the next page (back/forward cache): the form is usable again.
  globalThis.addEventListener("pageshow", function (e) {
    if (!e.persisted) return;
    var forms = document.querySelectorAll("form");
    for (var i = 0; i < forms.length; i++) busy(forms[i], null, false);
  });

  // A strip with data-dismiss-key closes with its × and stays closed for this session.
  function dismissible(root) {
    var strips = (root || document).querySelectorAll("[data-dismiss-key]");
    for (var i = 0; i < strips.length; i++) {
      var strip = strips[i];
      var key = "dismissed:" + strip.getAttribute("data-dismiss-key");
      try {
        if (sessionStorage.getItem(key)) strip.hidden = true;
      } catch (_) { /* storage blocked: always shown */ }
      var btn = strip.querySelector("[data-dismiss]");
      if (btn) {
        btn.addEventListener(
          "click",
          (function (s, k) {
            return function () {
              s.hidden = true;
              try {
                sessionStorage.setItem(k, "1");
              } catch (_) { /* storage blocked */ }
            };
          })(strip, key),
        );
      }
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    dismissible(document);
  });

  // The service worker (static/sw.js) shows our 网络不可用 page when a page cannot load; its
  // version follows the shell's files (the layout marks them data-shell), so a new release caches
  // the new shell. Never a page's own scripts: 充值 (quick_amount.js, topup.js) and the pages
  // around it would each register another version, and every swap of workers could lose the
  // navigation the old one was answering (the 确认支付 that hung in e2e/billing_test.ts).
  if ("serviceWorker" in navigator && !location.pathname.startsWith("/admin")) {
    globalThis.addEventListener("load", function () {
      var refs = document.querySelectorAll("link[data-shell], script[data-shell]");
      var v = "";
      for (var i = 0; i < refs.length; i++) {
        v += (refs[i].href || refs[i].src).split("?v=")[1].slice(0, 4);
      }
      navigator.serviceWorker.register("/sw.js?v=" + v).catch(function () {});
    });
  }

  // A month picker (交易记录) shows its month as soon as one is chosen.
  document.addEventListener("change", function (e) {
    var el = e.target;
    var form = el && el.form;
    if (!form || !form.hasAttribute("data-autosubmit") || el.type !== "month") return;
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  });
})();

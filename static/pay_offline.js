// 离线付款码 (docs/OFFLINE_PAYMENT_CODES.md): while online, the 付款码 page keeps this phone's
// device (a handle and a key the server hands out once) in localStorage; when the network is gone
// it computes the code itself: RFC 6238 TOTP over WebCrypto HMAC-SHA256, 30-second steps, 8
// digits, shown as 87 + handle (7) + TOTP (8) + a Luhn check digit, as barcode, digits and QR.
// Nothing of the student's money is kept here: the limits shown are what the server said when the
// page last reached it. Fetched after the page shows (not part of its cold load) and cached by
// the service worker's shell for /pay/code/offline. The same arithmetic in TypeScript is
// modules/wallet/offline_codes.ts; offline_codes_test.ts runs this file against both.
(function (g) {
  "use strict";
  var PREFIX = "87";
  var STEP = 30;
  var DIGITS = 8;
  var STORE = "yxt.payDevice";
  // Code 128 symbols 0–102 as six bar/space widths each (set C pairs and the check symbol).
  var C128 =
    "212222222122222221121223121322131222122213122312132212221213221312231212112232122132122231113222123122123221223211221132221231213212223112312131311222321122321221312212322112322211212123212321232121111323131123131321112313132113132311211313231113231311112133112331132131113123113321133121313121211331231131213113213311213131311123311321331121312113312311332111314111221411431111111224111422121124121421141122141221112214112412122114122411142112142211241211221114413111241112134111111242121142121241114212124112124211411212421112421211212141214121412121111143111341131141114113114311411113411311113141114131311141411131";
  var START_C = "211232";
  var STOP = "2331112";

  function luhn(body) {
    var sum = 0;
    for (var i = 0; i < body.length; i++) {
      var d = body.charCodeAt(body.length - 1 - i) - 48;
      if (i % 2 === 0) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return String((10 - (sum % 10)) % 10);
  }

  function stepOf(ms) {
    return Math.floor(ms / 1000 / STEP);
  }

  function fromBase64Url(s) {
    var bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // RFC 6238 with RFC 4226's dynamic truncation; hash "SHA-1", "SHA-256" (ours) or "SHA-512".
  async function totp(keyBytes, step, digits, hash) {
    var n = digits || DIGITS;
    var key = await crypto.subtle.importKey(
      "raw",
      keyBytes,
      { name: "HMAC", hash: hash || "SHA-256" },
      false,
      ["sign"],
    );
    var counter = new Uint8Array(8);
    var view = new DataView(counter.buffer);
    view.setUint32(0, Math.floor(step / 0x100000000));
    view.setUint32(4, step >>> 0);
    var mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, counter));
    var o = mac[mac.length - 1] & 0x0f;
    var bin = ((mac[o] & 0x7f) << 24) | (mac[o + 1] << 16) | (mac[o + 2] << 8) | mac[o + 3];
    var s = String(bin % Math.pow(10, n));
    while (s.length < n) s = "0" + s;
    return s;
  }

  function code(handle, otp) {
    var body = PREFIX + handle + otp;
    return body + luhn(body);
  }

  // Bar and space widths of a Code 128 (set C) barcode of an even number of digits.
  function code128(digits) {
    var values = [105];
    for (var i = 0; i < digits.length; i += 2) values.push(Number(digits.slice(i, i + 2)));
    var check = 105;
    for (var j = 1; j < values.length; j++) check += j * values[j];
    values.push(check % 103);
    var pattern = START_C;
    for (var k = 1; k < values.length; k++) pattern += C128.substr(values[k] * 6, 6);
    pattern += STOP;
    return pattern.split("").map(Number);
  }

  // The barcode as the server draws it (bwip-js): on white, a quiet zone, no style attributes.
  function barcodeSvg(digits) {
    var widths = code128(digits);
    var x = 10;
    var d = "";
    for (var i = 0; i < widths.length; i++) {
      if (i % 2 === 0) d += "M" + x + " 2h" + widths[i] + "v41h-" + widths[i] + "z";
      x += widths[i];
    }
    var w = x + 10;
    return '<svg class="paycode__bar" preserveAspectRatio="none" shape-rendering="crispEdges"' +
      ' focusable="false" aria-hidden="true" viewBox="0 0 ' + w + ' 45"' +
      ' xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#FFFFFF"/>' +
      '<path fill="#000000" d="' + d + '"/></svg>';
  }

  // The QR as the server draws it (modules/wallet/qr.ts), with the vendored qrcode-generator.
  function qrSvg(digits) {
    var qr = g.qrcode(0, "M");
    qr.addData(digits, "Numeric");
    qr.make();
    var n = qr.getModuleCount();
    var size = n + 8;
    var d = "";
    for (var r = 0; r < n; r++) {
      var c = 0;
      while (c < n) {
        if (!qr.isDark(r, c)) {
          c++;
          continue;
        }
        var start = c;
        while (c < n && qr.isDark(r, c)) c++;
        d += "M" + (start + 4) + " " + (r + 4) + "h" + (c - start) + "v1h-" + (c - start) + "z";
      }
    }
    return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ' + size + " " + size +
      '" shape-rendering="crispEdges" class="paycode__svg"><path fill="#fff" d="M0 0h' + size +
      "v" + size + 'H0z"/><path fill="#000" d="' + d + '"/></svg>';
  }

  var api = {
    luhn: luhn,
    stepOf: stepOf,
    totp: totp,
    code: code,
    code128: code128,
    barcodeSvg: barcodeSvg,
    qrSvg: qrSvg,
    fromBase64Url: fromBase64Url,
  };
  g.yxtOffline = api;
  if (!g.document) return;
  var doc = g.document;

  function device() {
    try {
      var d = JSON.parse(g.localStorage.getItem(STORE) || "null");
      return d && /^\d{7}$/.test(d.handle) && typeof d.key === "string" ? d : null;
    } catch (_) {
      return null;
    }
  }

  function save(d) {
    try {
      if (d) g.localStorage.setItem(STORE, JSON.stringify(d));
      else g.localStorage.removeItem(STORE);
    } catch (_) {
      // Storage refused (private mode): the page stays online-only.
    }
  }

  function yuan(fen) {
    return "¥" + (fen / 100).toFixed(2);
  }

  // The code of this moment, by the server's clock as last seen (a phone clock minutes off would
  // make codes the server refuses).
  async function currentCode(d) {
    var step = stepOf(Date.now() + (d.offset || 0));
    return { step: step, code: code(d.handle, await totp(fromBase64Url(d.key), step)) };
  }

  function el(tag, cls, text) {
    var e = doc.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  // The offline block inside the card: barcode, masked digits behind 查看数字, QR, the limits.
  function offlineBlock(d) {
    var box = el("div", "paycode__offline");
    box.setAttribute("data-offline-codes", "");
    var bar = el("div", "paycode__barcode");
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", "付款条形码");
    var num = el("p", "paycode__num");
    var masked = el("span", "paycode__masked");
    masked.setAttribute("data-masked", "");
    var digits = el("span", "big-number paycode__digits");
    digits.setAttribute("data-digits", "");
    digits.hidden = true;
    var reveal = el("button", "paycode__reveal", "查看数字");
    reveal.type = "button";
    reveal.setAttribute("data-reveal", "");
    reveal.setAttribute("aria-expanded", "false");
    num.append(masked, digits, reveal);
    var qr = el("div", "paycode__qr");
    qr.setAttribute("role", "img");
    qr.setAttribute("aria-label", "付款二维码");
    var note = el(
      "p",
      "tips",
      "离线付款码：单笔不超过 " + yuan(d.payLimit) + "，每日不超过 " + yuan(d.dailyLimit) +
        "；每30秒更新，每个码只能付一次。联网后自动恢复在线付款码。",
    );
    note.setAttribute("data-offline-note", "");
    box.append(bar, num, qr, note);
    return box;
  }

  var timer = null;
  var shownStep = null;

  async function paint(card, d) {
    var box = card.querySelector("[data-offline-codes]");
    if (!box) return;
    var now = await currentCode(d);
    if (now.step !== shownStep) {
      shownStep = now.step;
      box.querySelector(".paycode__barcode").innerHTML = barcodeSvg(now.code);
      if (g.qrcode) box.querySelector(".paycode__qr").innerHTML = qrSvg(now.code);
      box.querySelector("[data-masked]").textContent = now.code.slice(0, 4) + " ******";
      box.querySelector("[data-digits]").textContent = now.code.replace(/(\d{4})(?=\d)/g, "$1 ");
      box.setAttribute("data-step", String(now.step));
    }
    clearTimeout(timer);
    var next = (now.step + 1) * STEP * 1000 - (Date.now() + (d.offset || 0));
    timer = setTimeout(function () {
      if (doc.body.contains(box)) paint(card, d);
    }, Math.max(200, next + 50));
  }

  function setTitle(offline) {
    var t = doc.querySelector(".paycode-band__title");
    if (t) t.textContent = offline ? "离线付款码" : "付款码";
  }

  // pay.js asks when the network is gone: true when an offline code is shown instead.
  api.show = function (card) {
    var d = device();
    if (!d || !g.crypto || !g.crypto.subtle || !card) return false;
    if (!card.querySelector("[data-offline-codes]")) {
      var online = card.querySelector(".paycode__codes");
      if (online) online.hidden = true;
      var retry = card.querySelector("[data-retry]");
      if (retry) retry.hidden = true;
      var anchor = card.querySelector(".paycode__hint");
      card.insertBefore(offlineBlock(d), anchor ? anchor.nextSibling : card.firstChild);
      card.classList.add("is-offline");
      shownStep = null;
    }
    setTitle(true);
    paint(card, d).catch(function () {
      api.hide(card);
    });
    return true;
  };

  api.hide = function (card) {
    clearTimeout(timer);
    var box = card && card.querySelector("[data-offline-codes]");
    if (box) box.remove();
    setTitle(false);
  };

  // While online: keep this phone's device (provisioned once; the server says when it was
  // removed, frozen or revoked by 挂失, and then the phone forgets it or gets a new one).
  async function sync(band) {
    var d = device();
    var token = "";
    try {
      token = JSON.parse(doc.body.getAttribute("hx-headers") || "{}")["x-csrf-token"] || "";
    } catch (_) {
      return;
    }
    var body = new URLSearchParams();
    if (d) body.set("handle", d.handle);
    var sent = Date.now();
    var res = await fetch(band.getAttribute("data-offline-sync"), {
      method: "POST",
      headers: { "x-csrf-token": token, "content-type": "application/x-www-form-urlencoded" },
      body: body.toString(),
      credentials: "same-origin",
    });
    if (!res.ok) return;
    var r = await res.json();
    if (r.state === "off") return save(null);
    var keep = r.state === "new" ? { handle: r.handle, key: r.key } : d;
    if (!keep || keep.handle !== r.handle) return;
    // The server's clock at the middle of the round trip, against this phone's.
    keep.offset = r.serverTime - Math.round((sent + Date.now()) / 2);
    keep.payLimit = r.payLimit;
    keep.dailyLimit = r.dailyLimit;
    save(keep);
  }

  // Back to the online 付款码 once the server answers (the network may come back in steps).
  function backOnline() {
    if (!g.navigator.onLine) return;
    fetch("/healthz", { cache: "no-store" }).then(function (r) {
      if (r.ok) g.location.replace("/pay/code");
      else setTimeout(backOnline, 3000);
    }, function () {
      setTimeout(backOnline, 3000);
    });
  }

  function start() {
    var band = doc.querySelector("[data-offline-sync]");
    if (band && g.crypto && g.crypto.subtle && g.fetch) {
      sync(band).catch(function () {
        // Offline already, or a hiccup: the next visit tries again.
      });
    }
    // The shell the service worker keeps for /pay/code: offline codes only, back online by itself.
    var shell = doc.querySelector("[data-offline-shell]");
    if (shell) {
      var card = doc.getElementById("paycode-card");
      if (!api.show(card)) {
        var none = doc.querySelector("[data-offline-none]");
        if (none) none.hidden = false;
      }
      g.addEventListener("online", backOnline);
      // Shown while the phone says it is online: the server was out of reach; look again later.
      if (g.navigator.onLine) setTimeout(backOnline, 3000);
    }
  }
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", start);
  else start();
  doc.addEventListener("htmx:afterSwap", function () {
    var card = doc.getElementById("paycode-card");
    if (card && !card.querySelector("[data-offline-codes]")) setTitle(false);
  });
})(globalThis);

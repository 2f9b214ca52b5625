import qrcode from "qrcode-generator";
import bwipjs from "bwip-js";

/**
 * The payment code as a QR code in SVG: one path of horizontal runs, a few hundred bytes, no
 * style attributes (the CSP forbids inline styles). `code` is digits only, so nothing to escape.
 */
export function qrSvg(code: string): string {
  if (!/^\d+$/.test(code)) throw new Error("Cannot draw QR code: digits only");
  const qr = qrcode(0, "M");
  qr.addData(code, "Numeric");
  qr.make();
  const n = qr.getModuleCount();
  const quiet = 4;
  const size = n + quiet * 2;
  let d = "";
  for (let r = 0; r < n; r++) {
    let c = 0;
    while (c < n) {
      if (!qr.isDark(r, c)) {
        c++;
        continue;
      }
      const start = c;
      while (c < n && qr.isDark(r, c)) c++;
      d += `M${start + quiet} ${r + quiet}h${c - start}v1h-${c - start}z`;
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" shape-rendering="crispEdges" class="paycode__svg">` +
    `<path fill="#fff" d="M0 0h${size}v${size}H0z"/><path fill="#000" d="${d}"/></svg>`;
}

/** "8812 ******": only the prefix in clear until the student taps 查看数字 (as WeChat Pay). */
export function maskDigits(code: string): string {
  return `${code.slice(0, 4)} ******`;
}

/** "8812 3456 7890 1234 56": groups of four for reading aloud or typing into a till. */
export function groupDigits(code: string): string {
  return code.replace(/(\d{4})(?=\d)/g, "$1 ");
}

/**
 * The same payment code as a Code128 barcode in SVG (bwip-js), for the laser scanners many
 * canteen tills still have: on white, with a quiet zone; presentation attributes only (CSP).
 */
export function barcodeSvg(code: string): string {
  if (!/^\d+$/.test(code)) throw new Error("Cannot draw barcode: digits only");
  const svg = bwipjs.toSVG({
    bcid: "code128",
    text: code,
    scale: 1,
    height: 14,
    paddingwidth: 10,
    paddingheight: 2,
    backgroundcolor: "FFFFFF",
  });
  return svg.replace(
    /^<svg /,
    '<svg class="paycode__bar" preserveAspectRatio="none" shape-rendering="crispEdges" focusable="false" aria-hidden="true" ',
  );
}

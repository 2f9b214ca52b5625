import { qrMatrix } from "./qr_matrix.ts";

/**
 * The payment code as a QR code in SVG: one path of horizontal runs, a few hundred bytes, no
 * style attributes (the CSP forbids inline styles). `code` is digits only, so nothing to escape.
 */
export function qrSvg(code: string): string {
  if (!/^\d+$/.test(code)) throw new Error("Cannot draw QR code: digits only");
  const { size: n, modules } = qrMatrix(code);
  const quiet = 4;
  const size = n + quiet * 2;
  let d = "";
  for (let r = 0; r < n; r++) {
    let c = 0;
    while (c < n) {
      if (!modules[r * n + c]) {
        c++;
        continue;
      }
      const start = c;
      while (c < n && modules[r * n + c]) c++;
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

// Code 128 symbols 0–102 as six bar/space widths each (set C's digit pairs and the check symbol);
// static/pay_offline.js draws 离线付款码 from the same table.
const C128 =
  "212222222122222221121223121322131222122213122312132212221213221312231212112232122132122231113222123122123221223211221132221231213212223112312131311222321122321221312212322112322211212123212321232121111323131123131321112313132113132311211313231113231311112133112331132131113123113321133121313121211331231131213113213311213131311123311321331121312113312311332111314111221411431111111224111422121124121421141122141221112214112412122114122411142112142211241211221114413111241112134111111242121142121241114212124112124211411212421112421211212141214121412121111143111341131141114113114311411113411311113141114131311141411131";
const START_C = 105;
const START_C_WIDTHS = "211232";
const STOP_WIDTHS = "2331112";

/** The bar and space widths of `digits` (an even number of them) in Code 128 set C. */
export function code128Widths(digits: string): number[] {
  if (!/^\d+$/.test(digits) || digits.length % 2 !== 0) {
    throw new Error("Cannot draw barcode: an even number of digits only");
  }
  let pattern = START_C_WIDTHS;
  let check = START_C;
  for (let i = 0; i < digits.length; i += 2) {
    const value = Number(digits.slice(i, i + 2));
    check += (i / 2 + 1) * value;
    pattern += C128.substr(value * 6, 6);
  }
  pattern += C128.substr((check % 103) * 6, 6) + STOP_WIDTHS;
  return Array.from(pattern, Number);
}

/**
 * The same payment code as a Code 128 barcode in SVG, for the laser scanners many canteen tills
 * still have: one module per unit, 41 high, on white with a quiet zone of ten; presentation
 * attributes only (CSP). The markup is static/pay_offline.js's, so a 离线付款码 looks the same.
 */
export function barcodeSvg(code: string): string {
  const widths = code128Widths(code);
  let x = 10;
  let d = "";
  for (let i = 0; i < widths.length; i++) {
    if (i % 2 === 0) d += `M${x} 2h${widths[i]}v41h-${widths[i]}z`;
    x += widths[i];
  }
  return `<svg class="paycode__bar" preserveAspectRatio="none" shape-rendering="crispEdges" focusable="false" aria-hidden="true" viewBox="0 0 ${
    x + 10
  } 45" xmlns="http://www.w3.org/2000/svg"><rect width="100%" height="100%" fill="#FFFFFF"/><path fill="#000000" d="${d}"/></svg>`;
}

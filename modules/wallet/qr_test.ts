import assert from "node:assert/strict";
import qrcode from "qrcode-generator";
import bwipjs from "bwip-js";
import { code128Widths, qrSvg } from "./qr.ts";
import { QR_MAX_DIGITS, qrMatrix } from "./qr_matrix.ts";

/** qrcode-generator's modules for `digits` (numeric, level M), row by row. */
function libraryModules(digits: string): Uint8Array {
  const qr = qrcode(0, "M");
  qr.addData(digits, "Numeric");
  qr.make();
  const n = qr.getModuleCount();
  const out = new Uint8Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) out[r * n + c] = qr.isDark(r, c) ? 1 : 0;
  return out;
}

function randomDigits(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String(Math.floor(Math.random() * 10));
  return s;
}

Deno.test("the QR of a code is qrcode-generator's, module for module and mask for mask", () => {
  const codes = ["881234567890123452", "870000000043095583", "0", "000", "9".repeat(QR_MAX_DIGITS)];
  for (let i = 0; i < 600; i++) codes.push(randomDigits(i % 3 ? 18 : 1 + (i % QR_MAX_DIGITS)));
  for (const code of codes) {
    const { size, modules } = qrMatrix(code);
    assert.equal(size, 21, code);
    assert.deepEqual(modules, libraryModules(code), code);
  }
});

Deno.test("the QR refuses what is not 1 to 34 digits", () => {
  assert.throws(() => qrMatrix(""), /digits/);
  assert.throws(() => qrMatrix("8".repeat(QR_MAX_DIGITS + 1)), /digits/);
  assert.throws(() => qrMatrix("88<script>"), /digits/);
  assert.throws(() => qrSvg("12a"), /digits only/);
});

Deno.test("the barcode's bars are bwip-js's Code 128 of the same digits", () => {
  for (let i = 0; i < 300; i++) {
    const code = randomDigits(i % 2 ? 18 : 2 + 2 * (i % 20));
    // deno-lint-ignore no-explicit-any
    const raw = (bwipjs as any).raw({ bcid: "code128", text: code })[0].sbs as number[];
    assert.deepEqual(code128Widths(code), raw, code);
  }
  assert.throws(() => code128Widths("123"), /even number of digits/);
  assert.throws(() => code128Widths("12a4"), /even number of digits/);
});

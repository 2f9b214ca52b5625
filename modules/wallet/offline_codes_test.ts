/**
 * 离线付款码's arithmetic: RFC 6238's appendix B and the vectors of docs/OFFLINE_PAYMENT_CODES.md,
 * byte for byte, for the server's TypeScript and for the very script the phone runs
 * (static/pay_offline.js, loaded here as the browser loads it, on WebCrypto).
 */
import assert from "node:assert/strict";
import bwipjs from "bwip-js";
import qrcode from "qrcode-generator";
import {
  deviceKey,
  isOfflineCodeShape,
  matchStep,
  offlineCode,
  parseOfflineCode,
  stepOf,
  totp,
  type TotpHash,
} from "./offline_codes.ts";
import { isPaymentCodeShape } from "./codes.ts";
import { barcodeSvg, qrSvg } from "./qr.ts";
import { toHex } from "../platform/crypto.ts";

interface BrowserOffline {
  totp(key: Uint8Array, step: number, digits?: number, hash?: string): Promise<string>;
  code(handle: string, otp: string): string;
  stepOf(ms: number): number;
  code128(digits: string): number[];
  barcodeSvg(digits: string): string;
  qrSvg(digits: string): string;
  fromBase64Url(s: string): Uint8Array;
}

async function browserOffline(): Promise<BrowserOffline> {
  Object.assign(globalThis, { qrcode });
  await import("../../static/pay_offline.js");
  return (globalThis as unknown as { yxtOffline: BrowserOffline }).yxtOffline;
}

const ascii = (s: string) => new TextEncoder().encode(s);

/** RFC 6238 appendix B: the seeds of its reference implementation and its table. */
const RFC_SEEDS: Record<TotpHash, Uint8Array> = {
  sha1: ascii("12345678901234567890"),
  sha256: ascii("12345678901234567890123456789012"),
  sha512: ascii("1234567890123456789012345678901234567890123456789012345678901234"),
};
const RFC_TABLE: Array<[number, Record<TotpHash, string>]> = [
  [59, { sha1: "94287082", sha256: "46119246", sha512: "90693936" }],
  [1111111109, { sha1: "07081804", sha256: "68084774", sha512: "25091201" }],
  [1111111111, { sha1: "14050471", sha256: "67062674", sha512: "99943326" }],
  [1234567890, { sha1: "89005924", sha256: "91819424", sha512: "93441116" }],
  [2000000000, { sha1: "69279037", sha256: "90698825", sha512: "38618901" }],
  [20000000000, { sha1: "65353130", sha256: "77737706", sha512: "47863826" }],
];
const WEB_HASH: Record<TotpHash, string> = { sha1: "SHA-1", sha256: "SHA-256", sha512: "SHA-512" };

Deno.test("TOTP gives RFC 6238 appendix B's values (SHA-1, SHA-256, SHA-512), server and page", async () => {
  const web = await browserOffline();
  for (const [time, expected] of RFC_TABLE) {
    const step = stepOf(time * 1000);
    assert.equal(web.stepOf(time * 1000), step);
    for (const hash of ["sha1", "sha256", "sha512"] as const) {
      assert.equal(totp(RFC_SEEDS[hash], step, { hash }), expected[hash], `${hash} at ${time}`);
      assert.equal(
        await web.totp(RFC_SEEDS[hash], step, 8, WEB_HASH[hash]),
        expected[hash],
        `page: ${hash} at ${time}`,
      );
    }
  }
});

/** The vectors of docs/OFFLINE_PAYMENT_CODES.md §2.2, as the document states them. */
async function docVectors() {
  const text = await Deno.readTextFile(
    new URL("../../docs/OFFLINE_PAYMENT_CODES.md", import.meta.url),
  );
  const rows = [
    ...text.matchAll(
      /^\| (V\d+) +\| (\d{7}) \| (\d+) +\| (\d+) +\| (\d{8}) \| `(\d{18})` \|$/gm,
    ),
  ];
  const derivation =
    /`APP_SECRET`\s+=\s+`([^`]+)`,\s+device\s+id\s+(\d+),\s+salt\s+`([^`]+)`\s+→\s+key\s+`([0-9a-f]{64})`/
      .exec(text);
  return {
    rows: rows.map((m) => ({
      name: m[1],
      handle: m[2],
      time: Number(m[3]),
      step: Number(m[4]),
      otp: m[5],
      code: m[6],
    })),
    derivation: derivation && {
      secret: derivation[1],
      deviceId: Number(derivation[2]),
      salt: derivation[3],
      keyHex: derivation[4],
    },
  };
}

const VECTOR_KEY = new Uint8Array(32).map((_, i) => i);

Deno.test("docs/OFFLINE_PAYMENT_CODES.md's vectors are the codes server and page make, byte for byte", async () => {
  const web = await browserOffline();
  const { rows, derivation } = await docVectors();
  assert.equal(rows.length, 5, "the document's five vectors");
  for (const v of rows) {
    assert.equal(stepOf(v.time * 1000), v.step, `${v.name}: step`);
    assert.equal(totp(VECTOR_KEY, v.step), v.otp, `${v.name}: TOTP`);
    assert.equal(offlineCode(v.handle, v.otp), v.code, `${v.name}: code`);
    assert.equal(await web.totp(VECTOR_KEY, web.stepOf(v.time * 1000)), v.otp, `${v.name}: page`);
    assert.equal(web.code(v.handle, v.otp), v.code, `${v.name}: page's code`);
    assert.deepEqual(parseOfflineCode(v.code), { handle: v.handle, otp: v.otp });
    assert.ok(isOfflineCodeShape(v.code));
    assert.ok(!isPaymentCodeShape(v.code), `${v.name}: not an online code`);
  }
  assert.ok(derivation, "the document states the key derivation's vector");
  const key = deviceKey(derivation.secret, derivation.deviceId, derivation.salt);
  assert.equal(toHex(key), derivation.keyHex);
});

Deno.test("terminal/PROTOCOL.md §6.4's offline codes are the document's device's codes at their moments", async () => {
  const text = await Deno.readTextFile(new URL("../../terminal/PROTOCOL.md", import.meta.url));
  const section = text.slice(text.indexOf("### 6.4"), text.indexOf("## 7."));
  const metas = [...section.matchAll(/```vector\n(\{.*\})\n/g)].map((m) => JSON.parse(m[1]));
  const scans = metas.filter((v) => v.message.code === 0x11);
  assert.equal(scans.length, 3);
  const [paid, again, slow] = scans;
  const codeAt = (unix: number) => offlineCode("0012345", totp(VECTOR_KEY, stepOf(unix * 1000)));
  assert.equal(paid.message.paymentCode, codeAt(paid.timestamp));
  assert.equal(again.message.paymentCode, paid.message.paymentCode);
  // The slow phone's code is of five minutes before the scan: ten steps, a clock off.
  assert.equal(slow.message.paymentCode, codeAt(slow.timestamp - 310));
  assert.deepEqual(
    matchStep(
      VECTOR_KEY,
      parseOfflineCode(slow.message.paymentCode)!.otp,
      stepOf(slow.timestamp * 1000),
    ),
    { kind: "skewed", step: stepOf((slow.timestamp - 310) * 1000) },
  );
  const upload = metas.find((v) => v.message.code === 0x52)!;
  const [byCode] = upload.message.records;
  assert.equal(byCode.paymentCode, codeAt(byCode.occurredAt));
});

Deno.test("an offline code is told from online, WeChat and Alipay codes and from a misread", () => {
  const code = offlineCode("0012345", "66879360");
  assert.ok(isOfflineCodeShape(code));
  // Every single-digit misread breaks the check digit.
  for (let i = 0; i < code.length; i++) {
    const d = Number(code[i]);
    const misread = code.slice(0, i) + String((d + 1) % 10) + code.slice(i + 1);
    assert.ok(!isOfflineCodeShape(misread), `digit ${i}`);
  }
  for (
    const other of [
      "880123456789012342", // ours, online
      "134567890123456789", // WeChat Pay
      "281234567890123456", // Alipay
      "87001234566879360", // 17 digits
      "8700123456687936080", // 19 digits
      "87001234566879360a",
    ]
  ) {
    assert.ok(!isOfflineCodeShape(other), other);
  }
  assert.ok(isPaymentCodeShape("880123456789012342"));
  assert.throws(() => offlineCode("12345", "66879360"));
  assert.throws(() => offlineCode("0012345", "6687936"));
});

Deno.test("a code matches its own step or one either side; further out, within ten minutes, it is a clock off", () => {
  const step = 58802400;
  const otp = totp(VECTOR_KEY, step);
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step), { kind: "ok", step });
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step + 1), { kind: "ok", step });
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step - 1), { kind: "ok", step });
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step + 2), { kind: "skewed", step });
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step - 20), { kind: "skewed", step });
  assert.deepEqual(matchStep(VECTOR_KEY, otp, step + 21), { kind: "none" });
  const other = new Uint8Array(32).fill(7);
  assert.deepEqual(matchStep(other, otp, step), { kind: "none" });
});

Deno.test("the page draws the offline code as the server draws codes: Code 128 of bwip-js, the same barcode and QR", async () => {
  const web = await browserOffline();
  for (const code of ["870012345668793608", "879876543668793604", "870000000043095583"]) {
    // deno-lint-ignore no-explicit-any
    const raw = (bwipjs as any).raw({ bcid: "code128", text: code })[0].sbs as number[];
    assert.deepEqual(web.code128(code), raw, `${code}: the library's encoding`);
    assert.equal(web.qrSvg(code), qrSvg(code), `${code}: the server's QR`);
    const svg = web.barcodeSvg(code);
    assert.equal(svg, barcodeSvg(code), `${code}: the server's barcode`);
    assert.match(svg, /^<svg class="paycode__bar"[^>]*aria-hidden="true"/);
    assert.doesNotMatch(svg, /style=/, "no inline style (CSP)");
    assert.match(svg, /fill="#FFFFFF"/);
  }
  assert.deepEqual(web.fromBase64Url("AAEC_-8"), new Uint8Array([0, 1, 2, 255, 239]));
});

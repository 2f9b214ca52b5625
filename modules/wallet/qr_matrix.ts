/**
 * The modules of a QR code (ISO/IEC 18004) for a payment code: numeric mode, version 1 (21 × 21),
 * error correction M, so up to 34 digits. The page draws a new code every 30 seconds for every
 * student, so the parts that never change (function patterns, where each data bit goes, the eight
 * masks at those places) are worked out once here, and a code costs its bits, ten Reed–Solomon
 * symbols and eight mask trials on typed arrays.
 *
 * The mask is chosen as qrcode-generator chooses it (its `getLostPoint`, scored with the format
 * information left light, the first lowest score winning), so a code looks the same whether the
 * server drew it or the phone did (static/vendor/qrcode.js draws 离线付款码); qr_test.ts checks
 * both libraries module for module.
 */

const SIZE = 21;
const DATA_CODEWORDS = 16;
const EC_CODEWORDS = 10;
/** Error correction level M in the format information (L 01, M 00, Q 11, H 10). */
const LEVEL_M = 0;
/** Digits that fit version 1-M in numeric mode. */
export const QR_MAX_DIGITS = 34;

// GF(256) with the QR polynomial x⁸ + x⁴ + x³ + x² + 1.
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = x;
  LOG[x] = i;
  x <<= 1;
  if (x & 0x100) x ^= 0x11d;
}
for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];

/** The generator polynomial (x − α⁰)…(x − α⁹), highest power first, leading 1 left out. */
const GENERATOR = (() => {
  let g = [1];
  for (let i = 0; i < EC_CODEWORDS; i++) {
    const next = new Array<number>(g.length + 1).fill(0);
    for (let j = 0; j < g.length; j++) {
      next[j] ^= g[j];
      if (g[j] !== 0) next[j + 1] ^= EXP[LOG[g[j]] + i];
    }
    g = next;
  }
  return Uint8Array.from(g.slice(1));
})();

/** Function modules of version 1: 1 dark, 0 light; `FUNCTION` marks where they are. */
const TEMPLATE = new Uint8Array(SIZE * SIZE);
const FUNCTION = new Uint8Array(SIZE * SIZE);
function setFunction(r: number, c: number, dark: boolean): void {
  TEMPLATE[r * SIZE + c] = dark ? 1 : 0;
  FUNCTION[r * SIZE + c] = 1;
}
for (const [row, col] of [[0, 0], [SIZE - 7, 0], [0, SIZE - 7]]) {
  // Finder pattern with its light separator.
  for (let r = -1; r <= 7; r++) {
    for (let c = -1; c <= 7; c++) {
      if (row + r < 0 || row + r >= SIZE || col + c < 0 || col + c >= SIZE) continue;
      const ring = (r >= 0 && r <= 6 && (c === 0 || c === 6)) ||
        (c >= 0 && c <= 6 && (r === 0 || r === 6));
      const core = r >= 2 && r <= 4 && c >= 2 && c <= 4;
      setFunction(row + r, col + c, ring || core);
    }
  }
}
for (let i = 8; i < SIZE - 8; i++) {
  setFunction(i, 6, i % 2 === 0);
  setFunction(6, i, i % 2 === 0);
}
/** Where the 15 format bits go: bit i at FORMAT_A[i] and FORMAT_B[i]; then the dark module. */
const FORMAT_A: number[] = [];
const FORMAT_B: number[] = [];
for (let i = 0; i < 15; i++) {
  FORMAT_A.push((i < 6 ? i : i < 8 ? i + 1 : SIZE - 15 + i) * SIZE + 8);
  FORMAT_B.push(8 * SIZE + (i < 8 ? SIZE - i - 1 : i < 9 ? 15 - i : 14 - i));
}
const DARK_MODULE = (SIZE - 8) * SIZE + 8;
for (const at of [...FORMAT_A, ...FORMAT_B, DARK_MODULE]) {
  TEMPLATE[at] = 0; // light while masks are scored
  FUNCTION[at] = 1;
}

/** The data modules in placement order: two columns at a time, up then down, from bottom right. */
const PLACES = (() => {
  const places: number[] = [];
  let up = true;
  for (let col = SIZE - 1; col > 0; col -= 2) {
    if (col === 6) col--;
    for (let k = 0; k < SIZE; k++) {
      const row = up ? SIZE - 1 - k : k;
      for (let c = 0; c < 2; c++) {
        const at = row * SIZE + col - c;
        if (!FUNCTION[at]) places.push(at);
      }
    }
    up = !up;
  }
  return Uint16Array.from(places);
})();

const MASKS: Array<(i: number, j: number) => boolean> = [
  (i, j) => (i + j) % 2 === 0,
  (i) => i % 2 === 0,
  (_i, j) => j % 3 === 0,
  (i, j) => (i + j) % 3 === 0,
  (i, j) => (Math.floor(i / 2) + Math.floor(j / 3)) % 2 === 0,
  (i, j) => (i * j) % 2 + (i * j) % 3 === 0,
  (i, j) => ((i * j) % 2 + (i * j) % 3) % 2 === 0,
  (i, j) => ((i * j) % 3 + (i + j) % 2) % 2 === 0,
];
/** For each mask, 1 where it flips the data module at that place. */
const MASK_BITS = MASKS.map((mask) =>
  Uint8Array.from(PLACES, (at) => mask(Math.floor(at / SIZE), at % SIZE) ? 1 : 0)
);

/** The 15 format bits (level M, `mask`): BCH(15, 5) with its fixed XOR pattern. */
function formatBits(mask: number): number {
  const data = (LEVEL_M << 3) | mask;
  let d = data << 10;
  for (let bit = 14; bit >= 10; bit--) {
    if ((d >> bit) & 1) d ^= 0x537 << (bit - 10);
  }
  return ((data << 10) | d) ^ 0x5412;
}

/** The 26 codewords of `digits`: mode, count, digit groups, terminator, pads, then the check. */
function codewords(digits: string): Uint8Array {
  const bytes = new Uint8Array(DATA_CODEWORDS + EC_CODEWORDS);
  let bits = 0;
  const put = (value: number, length: number) => {
    for (let i = length - 1; i >= 0; i--) {
      if ((value >>> i) & 1) bytes[bits >> 3] |= 0x80 >> (bits & 7);
      bits++;
    }
  };
  put(0b0001, 4);
  put(digits.length, 10);
  for (let i = 0; i < digits.length; i += 3) {
    const group = digits.slice(i, i + 3);
    put(Number(group), group.length * 3 + 1);
  }
  if (bits + 4 <= DATA_CODEWORDS * 8) bits += 4;
  bits = (bits + 7) & ~7;
  for (let pad = 0; bits < DATA_CODEWORDS * 8; pad ^= 1) put(pad ? 0x11 : 0xec, 8);
  // The remainder of data · x¹⁰ divided by the generator.
  const ec = bytes.subarray(DATA_CODEWORDS);
  for (let i = 0; i < DATA_CODEWORDS; i++) {
    const factor = bytes[i] ^ ec[0];
    ec.copyWithin(0, 1);
    ec[EC_CODEWORDS - 1] = 0;
    if (factor === 0) continue;
    const lf = LOG[factor];
    for (let j = 0; j < EC_CODEWORDS; j++) {
      if (GENERATOR[j] !== 0) ec[j] ^= EXP[LOG[GENERATOR[j]] + lf];
    }
  }
  return bytes;
}

/** The matrix framed by one module that matches neither colour, so neighbours need no bounds. */
const W = SIZE + 2;
const framed = new Uint8Array(W * W).fill(2);

/** qrcode-generator's penalty score (its four rules, as it computes them). */
function penalty(m: Uint8Array): number {
  for (let row = 0; row < SIZE; row++) {
    framed.set(m.subarray(row * SIZE, row * SIZE + SIZE), (row + 1) * W + 1);
  }
  let lost = 0;
  let darkCount = 0;
  for (let row = 1; row <= SIZE; row++) {
    for (let at = row * W + 1, end = at + SIZE; at < end; at++) {
      const dark = framed[at];
      darkCount += dark;
      const same = +(framed[at - W - 1] === dark) + +(framed[at - W] === dark) +
        +(framed[at - W + 1] === dark) + +(framed[at - 1] === dark) + +(framed[at + 1] === dark) +
        +(framed[at + W - 1] === dark) + +(framed[at + W] === dark) +
        +(framed[at + W + 1] === dark);
      if (same > 5) lost += 3 + same - 5;
    }
  }
  for (let row = 0; row < SIZE - 1; row++) {
    for (let col = 0; col < SIZE - 1; col++) {
      const at = row * SIZE + col;
      const count = m[at] + m[at + 1] + m[at + SIZE] + m[at + SIZE + 1];
      if (count === 0 || count === 4) lost += 3;
    }
  }
  for (let a = 0; a < SIZE; a++) {
    for (let b = 0; b < SIZE - 6; b++) {
      // 1:1:3:1:1 along the row a, then along the column a.
      const h = a * SIZE + b;
      if (
        m[h] && !m[h + 1] && m[h + 2] && m[h + 3] && m[h + 4] && !m[h + 5] && m[h + 6]
      ) lost += 40;
      const v = b * SIZE + a;
      if (
        m[v] && !m[v + SIZE] && m[v + 2 * SIZE] && m[v + 3 * SIZE] && m[v + 4 * SIZE] &&
        !m[v + 5 * SIZE] && m[v + 6 * SIZE]
      ) lost += 40;
    }
  }
  return lost + Math.abs(100 * darkCount / SIZE / SIZE - 50) / 5 * 10;
}

/** The QR code of `digits` (1 to 34 of them): 21 × 21 modules, row by row, 1 for dark. */
export function qrMatrix(digits: string): { size: number; modules: Uint8Array } {
  if (!/^\d+$/.test(digits) || digits.length > QR_MAX_DIGITS) {
    throw new Error(`Cannot draw QR code: 1 to ${QR_MAX_DIGITS} digits, got ${digits.length}`);
  }
  const bytes = codewords(digits);
  const data = new Uint8Array(PLACES.length);
  for (let i = 0; i < data.length; i++) data[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
  const m = new Uint8Array(SIZE * SIZE);
  let best = 0;
  let bestScore = 0;
  for (let mask = 0; mask < MASKS.length; mask++) {
    place(m, data, mask);
    const score = penalty(m);
    if (mask === 0 || score < bestScore) {
      best = mask;
      bestScore = score;
    }
  }
  place(m, data, best);
  const format = formatBits(best);
  for (let i = 0; i < 15; i++) {
    m[FORMAT_A[i]] = m[FORMAT_B[i]] = (format >> i) & 1;
  }
  m[DARK_MODULE] = 1;
  return { size: SIZE, modules: m };
}

function place(m: Uint8Array, data: Uint8Array, mask: number): void {
  m.set(TEMPLATE);
  const flips = MASK_BITS[mask];
  for (let i = 0; i < PLACES.length; i++) m[PLACES[i]] = data[i] ^ flips[i];
}

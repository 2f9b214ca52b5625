/**
 * Figures that hold on a noisy machine: a measurement repeated (alternating with its reference)
 * is reported as its median with the min–max of the repeats, and a target is decided only when the
 * whole spread lies on one side of it.
 */
import { fmt } from "./_lib.ts";

/** Median and range of repeated measurements. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** The spread of `xs` (NaN values are left out; an empty list gives NaNs). */
export function spread(xs: number[]): Spread {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** A target's verdict over a spread. */
export type Decision = "met" | "missed" | "not decided";

/** ≥ target: met when even the lowest repeat reaches it, missed when not even the highest does. */
export function atLeast(s: Spread, target: number): Decision {
  if (!s.n) return "not decided";
  return s.min >= target ? "met" : s.max < target ? "missed" : "not decided";
}

/** ≤ target: met when even the highest repeat stays within it, missed when not even the lowest does. */
export function atMost(s: Spread, target: number): Decision {
  if (!s.n) return "not decided";
  return s.max <= target ? "met" : s.min > target ? "missed" : "not decided";
}

/** All of several conditions: missed if any is, met if all are, otherwise not decided. */
export function allOf(...ds: Decision[]): Decision {
  if (ds.includes("missed")) return "missed";
  return ds.every((d) => d === "met") ? "met" : "not decided";
}

/** A decision as the results table writes it (a miss in bold). */
export function decisionText(d: Decision): string {
  return d === "missed" ? "**missed**" : d;
}

/** "3,120 (2,950–3,300)"; a single repeat without the range. */
export function spreadText(s: Spread, digits = 0, unit = ""): string {
  if (!s.n) return "—";
  const f = (x: number) => (Number.isFinite(x) ? fmt(x, digits) : "∞") + unit;
  return s.n === 1 || s.min === s.max ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** A ratio with two significant digits however small ("0.0041"). */
export function ratioText(x: number): string {
  if (!Number.isFinite(x)) return x === Infinity ? "∞" : String(x);
  return x >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

/** "0.71 × (0.64–0.80)". */
export function ratioSpreadText(s: Spread): string {
  if (!s.n) return "—";
  return s.n === 1 || s.min === s.max
    ? `${ratioText(s.median)} ×`
    : `${ratioText(s.median)} × (${ratioText(s.min)}–${ratioText(s.max)})`;
}

import { fenToYuanText } from "../platform/money.ts";

/** One bar: its label under it (e.g. "11月") and its value in fen. */
export interface Bar {
  label: string;
  value: number;
  highlight?: boolean;
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A small bar chart as SVG, drawn on the server (no chart library in the browser). It is a
 * picture of the table beside it, so it is hidden from screen readers; presentation attributes
 * only (the CSP forbids inline styles). Negative values draw as empty bars.
 */
export function barChartSvg(bars: Bar[]): string {
  const width = 320;
  const height = 160;
  const top = 18;
  const bottom = 22;
  const plot = height - top - bottom;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const slot = width / Math.max(1, bars.length);
  const barWidth = Math.min(28, slot * 0.6);
  let body = "";
  bars.forEach((b, i) => {
    const h = b.value > 0 ? Math.max(2, Math.round((b.value / max) * plot)) : 0;
    const x = Math.round(i * slot + (slot - barWidth) / 2);
    const y = top + plot - h;
    const cx = Math.round(i * slot + slot / 2);
    const fill = b.highlight ? "#057a3c" : "#8fd3ac";
    body += `<rect x="${x}" y="${y}" width="${
      Math.round(barWidth)
    }" height="${h}" rx="3" fill="${fill}"/>`;
    body += `<text x="${cx}" y="${height - 6}" text-anchor="middle" class="chart__label">${
      escapeXml(b.label)
    }</text>`;
    if (b.value > 0) {
      body += `<text x="${cx}" y="${y - 4}" text-anchor="middle" class="chart__value">${
        fenToYuanText(b.value)
      }</text>`;
    }
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" class="chart" aria-hidden="true" focusable="false">` +
    `<line x1="0" y1="${top + plot}" x2="${width}" y2="${
      top + plot
    }" stroke="currentColor" stroke-opacity=".2"/>${body}</svg>`;
}

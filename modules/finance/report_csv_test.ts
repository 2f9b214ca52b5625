import assert from "node:assert/strict";
import { parseCsv } from "../platform/csv.ts";
import { tableCsv } from "../platform/listing.ts";
import { reportTable } from "./reports.ts";

Deno.test("the finance report CSV neutralises names a spreadsheet would run, tab and CR too", () => {
  const names = ['=HYPERLINK("http://x")', "+A1", "-1+1", "@SUM(A1)", "\t=cmd", "\r=cmd"];
  const range = { from: "2026-11-01", to: "2026-11-30", by: "terminal" as const };
  const csv = tableCsv(
    reportTable(range),
    names.map((label, i) => ({
      key: String(i),
      label,
      merchant: `商户,${label}`,
      count: 1,
      amount: 1250,
      returned: 0,
    })),
  );
  assert.ok(csv.startsWith("\uFEFF终端,商户,笔数,金额(元),退款(元),起始日期,截止日期\r\n"));
  const rows = parseCsv(csv).slice(1);
  assert.deepEqual(rows.map((r) => r[0]), names.map((n) => `'${n}`));
  assert.deepEqual(rows[0].slice(1), [
    `商户,${names[0]}`,
    "1",
    "12.50",
    "0.00",
    "2026-11-01",
    "2026-11-30",
  ]);
});

import assert from "node:assert/strict";
import { attachment, exportLinks, pager, paging, queryString, tableCsv } from "./listing.ts";

Deno.test("paging reads a page number, clamps it to the list, and the pager links with the filters", () => {
  assert.deepEqual(paging(undefined), { page: 1, perPage: 50, offset: 0 });
  assert.deepEqual(paging(3, 101), { page: 3, perPage: 50, offset: 100 });
  assert.deepEqual(paging(9, 101), { page: 3, perPage: 50, offset: 100 });
  assert.deepEqual(paging(2, 0), { page: 1, perPage: 50, offset: 0 });
  const p = pager(
    "/admin/audit",
    { action: "card.closed", from: "", page: 7 },
    1000,
    paging(7, 1000),
  );
  assert.equal(p.pages, 20);
  assert.deepEqual([p.from, p.to], [301, 350]);
  assert.deepEqual(p.links, [1, 0, 5, 6, 7, 8, 9, 0, 20]);
  assert.equal(p.href(1), "/admin/audit?action=card.closed");
  assert.equal(p.href(8), "/admin/audit?action=card.closed&page=8");
  const none = pager("/x", {}, 0, paging(1, 0));
  assert.deepEqual([none.from, none.to, none.pages, none.links], [0, 0, 1, [1]]);
});

Deno.test("export links keep the filters, drop the page; files are named in Chinese with an ASCII fallback", () => {
  assert.deepEqual(exportLinks("/admin/cards", { q: "张 三", page: 4 }), {
    csv: "/admin/cards?q=%E5%BC%A0+%E4%B8%89&export=csv",
    xlsx: "/admin/cards?q=%E5%BC%A0+%E4%B8%89&export=xlsx",
  });
  assert.equal(queryString({ a: "", b: undefined }), "");
  assert.equal(
    attachment("审计日志-2026-12-07", "csv"),
    `attachment; filename="export.csv"; filename*=UTF-8''%E5%AE%A1%E8%AE%A1%E6%97%A5%E5%BF%97-2026-12-07.csv`,
  );
  const csv = tableCsv({
    name: "x",
    columns: [
      { header: "金额", value: (r: { fen: number; note: string }) => r.fen, kind: "yuan" },
      { header: "说明", value: (r) => r.note },
    ],
  }, [{ fen: -1234, note: "=HYPERLINK(1)" }]);
  assert.equal(csv, "\ufeff金额,说明\r\n-12.34,'=HYPERLINK(1)\r\n");
});

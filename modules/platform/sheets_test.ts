import assert from "node:assert/strict";
import iconv from "iconv-lite";
import {
  isWorkbook,
  readTable,
  readXlsx,
  SheetFormatError,
  unpackedSize,
  writeXlsx,
} from "./sheets.ts";

/** A zip archive of one stored (uncompressed) file. */
function storedZip(name: string, text: string): Uint8Array {
  const data = new TextEncoder().encode(text);
  const file = new TextEncoder().encode(name);
  let crc = 0xffffffff;
  for (const b of data) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  crc = (crc ^ 0xffffffff) >>> 0;
  const out = new Uint8Array(30 + file.length + data.length + 46 + file.length + 22);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x04034b50, true);
  v.setUint16(4, 20, true);
  v.setUint32(14, crc, true);
  v.setUint32(18, data.length, true);
  v.setUint32(22, data.length, true);
  v.setUint16(26, file.length, true);
  out.set(file, 30);
  out.set(data, 30 + file.length);
  const cd = 30 + file.length + data.length;
  v.setUint32(cd, 0x02014b50, true);
  v.setUint16(cd + 4, 20, true);
  v.setUint16(cd + 6, 20, true);
  v.setUint32(cd + 16, crc, true);
  v.setUint32(cd + 20, data.length, true);
  v.setUint32(cd + 24, data.length, true);
  v.setUint16(cd + 28, file.length, true);
  out.set(file, cd + 46);
  const end = cd + 46 + file.length;
  v.setUint32(end, 0x06054b50, true);
  v.setUint16(end + 8, 1, true);
  v.setUint16(end + 10, 1, true);
  v.setUint32(end + 12, 46 + file.length, true);
  v.setUint32(end + 16, cd, true);
  return out;
}

const columns = [
  { header: "学号", kind: "text" as const },
  { header: "姓名", kind: "text" as const },
  { header: "金额", kind: "money" as const },
];

Deno.test("a written workbook reads back: text stays text (leading zeros, a leading =), money as numbers", async () => {
  const bytes = await writeXlsx("持卡人", columns, [
    ["0012", "刘洋", 12.5],
    ["=1+1", "@SUM(A1)", null],
  ]);
  assert.ok(isWorkbook(bytes));
  const records = await readXlsx(bytes);
  assert.deepEqual(records.map((r) => [r.line, ...r.cells]), [
    [1, "学号", "姓名", "金额"],
    [2, "0012", "刘洋", "12.5"],
    [3, "=1+1", "@SUM(A1)"],
  ]);
  // No cell of the file is a formula: the text is stored as text.
  const raw = new TextDecoder("latin1").decode(bytes);
  assert.doesNotMatch(raw, /<f>/);
});

Deno.test("readTable takes a workbook or CSV in Excel's encodings, into the same records", async () => {
  const csv = iconv.encode("学号,姓名\r\n2025090001,刘洋\r\n", "gbk") as unknown as Uint8Array;
  const fromCsv = await readTable(new Uint8Array(csv));
  const fromXlsx = await readTable(
    await writeXlsx("x", columns.slice(0, 2), [["2025090001", "刘洋"]]),
  );
  assert.deepEqual(fromCsv, fromXlsx);
});

Deno.test("a number Excel stored with 16 digits or more is marked lossy; cell kinds read as text", async () => {
  const ExcelJS = (await import("exceljs")).default;
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet("s");
  ws.addRow(["身份证号", "学号", "日期", "富文本", "公式"]);
  ws.addRow([
    530111200608084519,
    2025090001,
    new Date(Date.UTC(2026, 5, 30)),
    { richText: [{ text: "刘" }, { text: "洋" }] },
    { formula: "1+1", result: 2 },
  ]);
  ws.addRow([]);
  ws.addRow(["", "  "]);
  const records = await readXlsx(new Uint8Array(await wb.xlsx.writeBuffer()));
  assert.equal(records.length, 2, "blank rows are left out");
  assert.deepEqual(records[1].cells.slice(1), ["2025090001", "2026-06-30", "刘洋", "2"]);
  assert.deepEqual(records[1].lossy, [0]);
  assert.equal(records[0].lossy, undefined);
});

Deno.test("a damaged workbook, one that unpacks too big, or a zip that is no workbook is refused clearly", async () => {
  const good = await writeXlsx("x", columns, [["1", "a", 1]]);
  const cut = good.slice(0, good.length - 30);
  await assert.rejects(() => readXlsx(cut, { field: "file" }), (err: unknown) => {
    assert.ok(err instanceof SheetFormatError);
    assert.equal(err.field, "file");
    assert.match(err.userMessage, /已损坏/);
    return true;
  });
  // The central directory claims 3.5 GB for its first part: refused before unpacking anything.
  const bomb = good.slice();
  const view = new DataView(bomb.buffer);
  const cd = bomb.length - 22;
  assert.equal(view.getUint32(cd, true), 0x06054b50);
  view.setUint32(view.getUint32(cd + 16, true) + 24, 0xd0000000, true);
  assert.ok(unpackedSize(bomb)! > 200 * 1024 * 1024);
  await assert.rejects(() => readXlsx(bomb), /too big unpacked/);
  // A zip with a text file in it.
  await assert.rejects(() => readXlsx(storedZip("hello.txt", "你好")), SheetFormatError);
});

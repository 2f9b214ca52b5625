import assert from "node:assert/strict";
import iconv from "iconv-lite";
import { CsvFormatError, decodeCsv, neutraliseCell, parseCsv, readCsv, writeCsv } from "./csv.ts";

const SAMPLE =
  "学号,姓名,身份证号,芯片卡号,类型\r\n2025000001,陈一,530102200501010011,7000000001,学生\r\n" +
  '2025000002,"阿卜杜拉·买买提",530102200502020022,7000000002,学生\r\n';

Deno.test("CSV decoding reads UTF-8 with and without BOM, GBK and UTF-16 alike", () => {
  const utf8 = new TextEncoder().encode(SAMPLE);
  const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...utf8]);
  const gbk = new Uint8Array(iconv.encode(SAMPLE, "gbk"));
  const utf16le = new Uint8Array([0xff, 0xfe, ...new Uint8Array(iconv.encode(SAMPLE, "utf16le"))]);
  const utf16be = new Uint8Array([0xfe, 0xff, ...new Uint8Array(iconv.encode(SAMPLE, "utf16be"))]);
  for (const bytes of [utf8, bom, gbk, utf16le, utf16be]) assert.equal(decodeCsv(bytes), SAMPLE);
  assert.notDeepEqual(gbk, utf8);
});

Deno.test("CSV parsing handles quotes, embedded commas and newlines, tabs and blank lines", () => {
  assert.deepEqual(parseCsv('a,"b,c","d ""e"""\r\n\r\n1,"2\n3",4'), [["a", "b,c", 'd "e"'], [
    "1",
    "2\n3",
    "4",
  ]]);
  assert.deepEqual(parseCsv("学号\t姓名\n1\t2\n"), [["学号", "姓名"], ["1", "2"]]);
  assert.deepEqual(parseCsv("\uFEFFa,b\r\n1,2\n3,4\r5,6\n , \n"), [["a", "b"], ["1", "2"], [
    "3",
    "4",
  ], ["5", "6"]]);
  // A quote inside an unquoted cell is kept as text (WeChat's backtick columns, 5"7 sizes).
  assert.deepEqual(parseCsv('`420001,5"7,x'), [["`420001", '5"7', "x"]]);
});

Deno.test("each record knows the line of the file it starts on", () => {
  const records = readCsv('h1,h2\n\n"multi\nline",x\nlast,y\n');
  assert.deepEqual(records.map((r) => r.line), [1, 3, 5]);
  assert.deepEqual(records[1].cells, ["multi\nline", "x"]);
});

Deno.test("an unclosed quote is a clear error naming its line and the form field", () => {
  let err: unknown;
  try {
    readCsv('a,b\n1,2\n"open,3\n4,5', { field: "file" });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CsvFormatError, String(err));
  assert.equal(err.field, "file");
  assert.equal(err.status, 422);
  assert.match(err.userMessage, /第3行的引号没有闭合/);
});

Deno.test("exported cells are never read as formulas: = + - @ tab and carriage return", () => {
  for (const bad of ["=1+1", "+1+1", "-1+2", "@SUM(A1)", "\t=cmd", "\r=cmd", '=HYPERLINK("x")']) {
    assert.equal(neutraliseCell(bad), `'${bad}`, JSON.stringify(bad));
  }
  for (const ok of ["一食堂", "12.50", "-3.00", "+7", "2026-11-25", "a=b"]) {
    assert.equal(neutraliseCell(ok), ok, ok);
  }
  assert.equal(neutraliseCell(-5), "-5");
});

Deno.test("an export is BOM, CRLF and quoted cells, and reads back as written", () => {
  const rows = [["名称", "金额"], ['a,"b"', "1.00"], ["two\nlines", "-2.00"], ["=bad", 3]];
  const text = writeCsv(rows);
  assert.ok(text.startsWith("\uFEFF名称,金额\r\n"));
  assert.ok(text.endsWith("\r\n"));
  assert.match(text, /"a,""b""",1\.00\r\n"two\nlines",-2\.00\r\n'=bad,3\r\n/);
  assert.deepEqual(parseCsv(text), [["名称", "金额"], ['a,"b"', "1.00"], ["two\nlines", "-2.00"], [
    "'=bad",
    "3",
  ]]);
  assert.ok(!writeCsv([["x"]], { bom: false }).startsWith("\uFEFF"));
});

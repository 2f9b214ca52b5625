import assert from "node:assert/strict";
import { csrfFor } from "../platform/testing.ts";
import { readXlsx } from "../platform/sheets.ts";
import { parseCsv } from "../platform/csv.ts";
import { ROLES } from "../staff/mod.ts";
import { cardWorld, idNumberFor, makeStaff } from "../testkit/mod.ts";
import { findCardByChip } from "./mod.ts";

const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

Deno.test("the import's sample templates: Excel with text columns and its instructions, CSV with the header", async () => {
  await using env = await cardWorld();
  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const page = await c.page("/admin/cards/import");
  assert.match(page, /href="\/admin\/cards\/import\/template\.xlsx" download>Excel 模板/);
  const res = await c.get("/admin/cards/import/template.xlsx");
  assert.equal(res.headers.get("content-type"), XLSX);
  const bytes = new Uint8Array(await res.arrayBuffer());
  assert.deepEqual((await readXlsx(bytes))[0].cells, [
    "学号",
    "姓名",
    "身份证号",
    "芯片卡号",
    "类型",
  ]);
  const ExcelJS = (await import("exceljs")).default;
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(bytes.buffer as ArrayBuffer);
  assert.deepEqual(wb.worksheets.map((w) => w.name), ["持卡人", "填写说明"]);
  assert.equal(wb.worksheets[0].getColumn(3).numFmt, "@", "身份证号 is a text column");
  assert.match(String(wb.worksheets[1].getCell("A5").value), /身份证号：18位/);
  const csv = await (await c.get("/admin/cards/import/template.csv")).text();
  assert.deepEqual(parseCsv(csv), [["学号", "姓名", "身份证号", "芯片卡号", "类型"]]);
  assert.equal(
    (await (await makeStaff(env, "fin", [ROLES.finance])).client.get(
      "/admin/cards/import/template.xlsx",
    )).status,
    403,
  );
});

Deno.test("an Excel workbook imports through the same preview and row errors as CSV; Excel's lost digits are named", async () => {
  await using env = await cardWorld();
  const ExcelJS = (await import("exceljs")).default;
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet("学生名单");
  ws.addRow(["类型", "学号", "姓名", "身份证号", "芯片卡号"]);
  ws.addRow(["学生", "2025090001", "刘洋", idNumberFor("53011120060808451"), "9100000001"]);
  // The 学号 typed as a number: read as its digits.
  ws.addRow(["教职工", 2025090002, "周老师", idNumberFor("53011119800808451"), "9100000002"]);
  // The 身份证 typed as a number: Excel already dropped its last digits.
  ws.addRow(["学生", "2025090003", "王芳", 530111200608084500, "9100000003"]);
  ws.addRow(["学生", "2025090004", "<b>x</b>", idNumberFor("53011120060808452"), "9100000004"]);
  const bytes = new Uint8Array(await wb.xlsx.writeBuffer());

  const { client: c } = await makeStaff(env, "clerk", [ROLES.cardOffice]);
  const form = new FormData();
  form.set("school_id", String(env.school.id));
  form.set("_csrf", await csrfFor(c.config, c.cookies, true));
  form.set("file", new File([bytes as BlobPart], "学生名单.xlsx", { type: XLSX }));
  const res = await c.app.request("http://localhost:8000/admin/cards/import", {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  });
  assert.equal(res.status, 303);
  const previewPath = res.headers.get("location")!;
  const preview = await c.page(previewPath);
  assert.match(preview, /将新开户 <strong>2<\/strong>/);
  assert.match(preview, /有错误（将跳过） <strong>2<\/strong>/);
  assert.match(
    preview,
    /<td>4<\/td><td>2025090003<\/td><td>身份证号在 Excel 中被存成了数字，末几位已丢失/,
  );
  assert.match(preview, /<td>5<\/td><td>2025090004<\/td><td>姓名格式不正确/);
  assert.match(preview, /学生名单\.xlsx/);
  assert.equal((await c.post(`${previewPath}/commit`)).status, 303);
  assert.equal((await findCardByChip(env.db, "9100000002"))!.studentNumber, "2025090002");
  assert.equal(await findCardByChip(env.db, "9100000003"), null);

  // A broken workbook comes back as the form with a clear message.
  const broken = new FormData();
  broken.set("school_id", String(env.school.id));
  broken.set("_csrf", await csrfFor(c.config, c.cookies, true));
  broken.set("file", new File([bytes.slice(0, 400) as BlobPart], "坏.xlsx", { type: XLSX }));
  const bad = await c.app.request("http://localhost:8000/admin/cards/import", {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: broken,
  });
  assert.equal(bad.status, 422);
  assert.match(await bad.text(), /Excel 文件已损坏/);
});

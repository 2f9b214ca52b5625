import { z } from "zod";
import { exportField } from "../platform/listing.ts";
import { parseYuan } from "../platform/money.ts";
import { chinaDay } from "../platform/china_time.ts";

/** A text field of a staff form, "" when absent; its format is the service's rule. */
const text = (max: number) => z.string().max(max, `不能超过${max}个字符`).optional().default("");

/** 床位数 as typed: 1–3 digits, else NaN for the room rules to refuse; empty means `empty`. */
function beds(raw: string, empty: number): number {
  const t = raw.trim();
  if (t === "") return empty;
  return /^\d{1,3}$/.test(t) ? Number(t) : NaN;
}

/** 新增楼栋: [楼栋编码], [楼栋名称]. */
export const buildingForm = z.object({ code: text(40), name: text(60) });

/** 修改楼栋名称. */
export const buildingNameForm = z.object({ name: text(60) });

/** 新增房间: [房间号], [床位数] (4 when left empty). The typed text stays for the form. */
export const newRoomForm = z.object({ number: text(40), capacity: text(10) })
  .transform((f) => ({ ...f, beds: beds(f.capacity, 4) }));

/** A room's 床位数 and 启用 switch. */
export const roomForm = z.object({ capacity: text(10), active: text(5) })
  .transform((f) => ({ beds: beds(f.capacity, NaN), active: f.active === "1" }));

/**
 * 房间导入: CSV pasted into [csv] or a chosen [file] (which wins when it is not empty), at most
 * 1 MB either way.
 */
export const roomsImportForm = z.object({
  csv: z.unknown().optional(),
  file: z.unknown().optional(),
})
  .transform(async (f, ctx) => {
    let csv = typeof f.csv === "string" ? f.csv : "";
    if (f.file instanceof File && f.file.size > 0) {
      if (f.file.size > 1_000_000) return issue(ctx, "csv", "文件不能超过1MB");
      csv = await f.file.text();
    }
    if (!csv.trim()) return issue(ctx, "csv", "请粘贴CSV内容或选择文件");
    if (csv.length > 1_000_000) return issue(ctx, "csv", "内容不能超过1MB");
    return csv;
  });

/** The 手机号 a resident page looks up (anything unreadable is no lookup). */
export const residentQuery = z.object({ phone: text(20).catch("") })
  .transform((q) => ({ phone: q.phone.trim() }));

/** 登记/调整住户: [手机号], [楼栋编码], [房间号]. */
export const residentMoveForm = z.object({ phone: text(20), building: text(40), room: text(40) });

/** 迁出住户: [手机号]. */
export const residentRemoveForm = z.object({ phone: text(20) });

/**
 * 设置费率: [类别], [计量单位], [单价] in yuan, and for showers [预授权金额] in yuan; the typed
 * text stays for the form, the amounts come out in fen.
 */
export const tariffForm = z.object({
  kind: text(20),
  unit: text(20),
  price: text(20),
  preauth: text(20),
}).transform((f, ctx) => {
  const fenPerUnit = parseYuan(f.price);
  if (fenPerUnit === null) return issue(ctx, "price", "请输入正确的单价（元，最多两位小数）");
  const preauthFen = f.kind === "shower" ? parseYuan(f.preauth) : null;
  if (f.kind === "shower" && preauthFen === null) {
    return issue(ctx, "preauth", "请输入正确的预授权金额（元）");
  }
  return { ...f, fenPerUnit, preauthFen };
});

const idText = z.string().regex(/^\d{1,12}$/).transform(Number);

/** 房间余额's building (none or unreadable: the first building). */
export const balancesQuery = z.object({
  building: idText.optional().catch(undefined),
  export: exportField,
});

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** A report's China days [from, to]; anything unreadable falls back to the last 30 days. */
export const reportQuery = z.object({ from: text(10).catch(""), to: text(10).catch("") })
  .transform((q) => ({
    from: DAY.test(q.from) ? q.from : chinaDay(Date.now() - 29 * 86_400_000),
    to: DAY.test(q.to) ? q.to : chinaDay(),
  }));

/** 模拟计量系统's fault switch: [范围] all or one room ([楼栋编码], [房间号]), on or off. */
export const simulatorForm = z.object({
  scope: text(10),
  on: text(5),
  building: text(40),
  room: text(40),
}).transform((f) => ({ ...f, on: f.on === "1" }));

/** 模拟用电 / 模拟用水: a room (building code and number), its utility and the credit used (元). */
export const simulatedUseForm = z.object({
  building: text(40),
  room: text(40),
  utility: z.enum(["electricity", "water"], { message: "请选择类型" }),
  amount: text(20),
}).transform((f, ctx) => {
  const fen = parseYuan(f.amount);
  if (fen === null || fen <= 0) return issue(ctx, "amount", "请输入正确的金额，最多两位小数");
  return { ...f, fen };
});

/**
 * 低余量提醒: a room size (床位数), a utility, and the 度/吨 below which residents are told (empty
 * removes it); at most three decimals.
 */
export const thresholdForm = z.object({
  utility: z.enum(["electricity", "water"], { message: "请选择类型" }),
  capacity: text(10),
  units: text(20),
}).transform((f, ctx) => {
  const capacity = beds(f.capacity, NaN);
  if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 20) {
    return issue(ctx, "capacity", "床位数需为1-20的整数");
  }
  const t = f.units.trim();
  if (t === "") return { utility: f.utility, capacity, milliUnits: null, typed: f };
  const m = /^(\d{1,6})(?:\.(\d{1,3}))?$/.exec(t);
  const milli = m ? Number(m[1]) * 1000 + Number((m[2] ?? "").padEnd(3, "0")) : 0;
  if (!m || milli <= 0) return issue(ctx, "units", "请输入大于0的数值，最多三位小数");
  return { utility: f.utility, capacity, milliUnits: milli, typed: f };
});

function issue(ctx: z.RefinementCtx, field: string, message: string): never {
  ctx.addIssue({ code: "custom", path: [field], message });
  return z.NEVER;
}

const BAD_AMOUNT = "请输入正确的金额，最多两位小数";

/**
 * 电费充值 / 冷水充值: an amount typed in [输入金额] or one of the quick amounts (the typed one
 * wins), in fen; the form's one-time token; the typed text, to show again.
 */
export const payForm = z.object({
  token: z.string().max(100, BAD_AMOUNT).optional().default(""),
  quick: z.string().max(20, BAD_AMOUNT).optional().default(""),
  amount: z.string().max(40, BAD_AMOUNT).optional().default(""),
}).transform((f, ctx) => {
  const text = f.amount.trim() || f.quick.trim();
  if (!text) return issue(ctx, "amount", "请选择或输入充值金额");
  const fen = parseYuan(text);
  if (fen === null) return issue(ctx, "amount", BAD_AMOUNT);
  return { amount: fen, token: f.token, typed: typedAmount(f) };
});

/** What [输入金额] and the quick amounts held, to show again with a message. */
export function typedAmount(f: { amount?: string; quick?: string }): Record<string, string> {
  return { amount: (f.amount ?? "").slice(0, 20), quick: (f.quick ?? "").slice(0, 20) };
}

/** 选择宿舍's query: the building chosen so far, where to go afterwards. */
export const roomQuery = z.object({
  building: idText.optional().catch(undefined),
  next: z.string().max(200).optional().catch(undefined),
});

/** 选择宿舍: [楼栋] and [房间] as ids (an unreadable room is NaN: no such room). */
export const roomChoiceForm = z.object({
  building: z.string().max(20).optional(),
  room: z.string().max(20).optional(),
  next: z.string().max(200).optional(),
}).transform((f) => ({
  buildingId: /^\d{1,12}$/.test(f.building ?? "") ? Number(f.building) : undefined,
  roomId: /^\d{1,12}$/.test(f.room ?? "") ? Number(f.room) : NaN,
  next: f.next,
}));

/**
 * 服务号 template messages (`POST /cgi-bin/message/template/send?access_token=…` with `{touser,
 * template_id, url, data: {keyword: {value}}, client_msg_id}`), the access token they need, and
 * which template each kind of message uses.
 *
 * Templates are the school's own (chosen in the 服务号's library), so their ids and keywords are
 * configuration: WECHAT_TEMPLATE_<KIND> is the template id, WECHAT_TEMPLATE_<KIND>_FIELDS maps the
 * template's keywords to the message's values ("thing1:merchant,amount2:amount,time3:time");
 * without _FIELDS the values go to keyword1…keywordN in the order the kind lists them (kinds.ts).
 * A kind without a template goes by email. The same ids serve 订阅通知 templates.
 *
 * One access token serves every instance (a new one ends the old one five minutes later): it is
 * kept in the database, fetched again when it is about to expire, and dropped when a call says it
 * is no longer good (40001, 40014, 42001) by whoever saw that token fail, who then asks once more
 * with the stored or a new one.
 */
import type { Db } from "../platform/database.ts";
import {
  fetchAccessToken,
  TOKEN_ERRORS,
  wechatMpCall,
  type WechatMpConfig,
  WechatMpError,
} from "../platform/wechat_mp.ts";
import { KINDS, type MessageData } from "./kinds.ts";
import type { MessageKind } from "./tables.ts";
import "./tables.ts";

/** A template and which message value fills each of its keywords. */
export interface Template {
  id: string;
  fields: Array<{ key: string; value: string }>;
}

const KIND_NAMES: Record<MessageKind, string> = {
  spend: "SPEND",
  topup: "TOPUP",
  subsidy: "SUBSIDY",
  subsidy_expiring: "SUBSIDY_EXPIRING",
  refund: "REFUND",
  low_balance: "LOW_BALANCE",
  utility_low: "UTILITY_LOW",
  security: "SECURITY",
  summary: "SUMMARY",
};

/** Reads WECHAT_TEMPLATE_* settings; throws one clear line when one cannot be read. */
export function loadTemplates(env: Record<string, string | undefined>): Map<MessageKind, Template> {
  const out = new Map<MessageKind, Template>();
  for (const [kind, name] of Object.entries(KIND_NAMES) as Array<[MessageKind, string]>) {
    const id = env[`WECHAT_TEMPLATE_${name}`]?.trim();
    if (!id) continue;
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
      throw new Error(`Cannot read WECHAT_TEMPLATE_${name}: not a template id`);
    }
    const names = KINDS[kind].lines.map(([n]) => n);
    const spec = env[`WECHAT_TEMPLATE_${name}_FIELDS`]?.trim();
    const fields = spec
      ? spec.split(",").map((pair) => {
        const [key, value] = pair.split(":").map((x) => x.trim());
        if (!key || !/^[a-z_]+[0-9]*$/.test(key) || !names.includes(value)) {
          throw new Error(
            `Cannot read WECHAT_TEMPLATE_${name}_FIELDS: "${pair}" is not keyword:value with a value of ${
              names.join(", ")
            }`,
          );
        }
        return { key, value };
      })
      : names.map((value, i) => ({ key: `keyword${i + 1}`, value }));
    out.set(kind, { id, fields });
  }
  return out;
}

/** A keyword's value as WeChat takes it: `thing` ≤ 20 characters, `phrase` ≤ 5, … (by its name). */
function fit(key: string, value: string): string {
  const limit = key.startsWith("thing")
    ? 20
    : key.startsWith("phrase")
    ? 5
    : key.startsWith("character_string") || key.startsWith("number")
    ? 32
    : 200;
  const chars = [...value];
  return chars.length <= limit ? value : chars.slice(0, limit - 1).join("") + "…";
}

/** The `data` of a template message. */
export function templateData(
  template: Template,
  data: MessageData,
): Record<string, { value: string }> {
  return Object.fromEntries(
    template.fields.map((f) => [f.key, { value: fit(f.key, String(data[f.value] ?? "")) }]),
  );
}

/** Sends template messages for one 服务号. */
export class WechatMessenger {
  #cached: { token: string; expiresAt: number } | null = null;

  constructor(
    private readonly db: Db,
    readonly config: WechatMpConfig,
    readonly templates: Map<MessageKind, Template>,
    private readonly fetcher?: typeof fetch,
  ) {}

  /** The template for a kind, or null (that kind goes by email). */
  templateFor(kind: MessageKind): Template | null {
    return this.templates.get(kind) ?? null;
  }

  /** A token good for at least another minute: this process's, the database's, or a new one. */
  async #token(now = Date.now()): Promise<string> {
    if (this.#cached && this.#cached.expiresAt - now > 60_000) return this.#cached.token;
    const read = () =>
      this.db.selectFrom("notify_wechat_tokens").select(["token", "expires_at"])
        .where("app_id", "=", this.config.appId).where("expires_at", ">", new Date(now + 60_000))
        .executeTakeFirst();
    let row = await read();
    if (!row) {
      // Fetched outside any transaction (no connection waits on WeChat). Two instances fetching
      // at once both store; the older token keeps working five more minutes, and whoever holds
      // it then gets 40001, drops its copy and reads the newer one.
      const { token, expiresIn } = await fetchAccessToken(this.config, this.fetcher);
      // Renewed five minutes early: WeChat keeps the old token working that long after a new one.
      const expires_at = new Date(Date.now() + Math.max(120, expiresIn - 300) * 1000);
      await this.db.insertInto("notify_wechat_tokens")
        .values({ app_id: this.config.appId, token, expires_at })
        .onConflict((oc) =>
          oc.column("app_id").doUpdateSet({ token, expires_at, updated_at: new Date() })
        ).execute();
      row = { token, expires_at };
    }
    this.#cached = { token: row.token, expiresAt: row.expires_at.getTime() };
    return row.token;
  }

  /** Forgets a token WeChat no longer takes (only if it is still the one stored). */
  async #drop(token: string): Promise<void> {
    if (this.#cached?.token === token) this.#cached = null;
    await this.db.deleteFrom("notify_wechat_tokens").where("app_id", "=", this.config.appId)
      .where("token", "=", token).execute();
  }

  /**
   * Sends one template message; its msgid, or WechatMpError. `clientMsgId` makes a repeat (after
   * a timeout that WeChat did take) a no-op on WeChat's side for ten minutes.
   */
  async send(input: {
    openid: string;
    template: Template;
    data: MessageData;
    url: string;
    clientMsgId: string;
  }): Promise<number> {
    const body = {
      touser: input.openid,
      template_id: input.template.id,
      url: input.url,
      data: templateData(input.template, input.data),
      client_msg_id: input.clientMsgId,
    };
    const call = async (token: string) =>
      await wechatMpCall(this.config, "/cgi-bin/message/template/send", {
        query: { access_token: token },
        body,
        fetcher: this.fetcher,
      });
    const token = await this.#token();
    let json: Record<string, unknown>;
    try {
      json = await call(token);
    } catch (err) {
      if (!(err instanceof WechatMpError) || !TOKEN_ERRORS.has(err.errcode ?? 0)) throw err;
      await this.#drop(token);
      json = await call(await this.#token());
    }
    return typeof json.msgid === "number" ? json.msgid : 0;
  }
}

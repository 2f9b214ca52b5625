/**
 * The soak's check of 消息通知 (issue 17): every payment acknowledged to a reader produced exactly
 * one 消费提醒, delivered to the payer's WeChat, through server kills and a PostgreSQL restart.
 *
 * `start()` runs the WeChat stand-in (modules/platform/wechat_standin.ts) in the soak's process,
 * so it outlives every server it serves; `env` points the server at it with a 消费提醒 template.
 * `bind(db, cards)` gives each cardholder a login account and a WeChat (so their payments have
 * someone to tell). `check(db, references)` lets one more notifier instance finish what the last
 * server left (leases of killed workers run out first), then asks, for each acknowledged payment:
 * one message, sent on WeChat, accepted once by the stand-in (the client_msg_id of a resend after
 * a kill is answered as a duplicate, and counted here).
 */
import { sql } from "kysely";
import type { Db } from "../modules/platform/mod.ts";
import { testConfig } from "../modules/platform/testing.ts";
import { startWechatStandIn, type WechatStandIn } from "../modules/platform/wechat_standin.ts";
import { horizonPassesNow } from "../modules/platform/feed.ts";
import { createMailer } from "../modules/mail/mod.ts";
import {
  buildMessenger,
  DEFAULT_POLICY,
  MESSAGE_QUEUE,
  runNotifierRound,
} from "../modules/notify/mod.ts";

const TEMPLATE = "SOAK_SPEND";
/** How long the check's instance may take to settle what the soak's servers left. */
const SETTLE_MS = 90_000;

/** The spend transfers of these references and their 消费提醒 (none: a row with id null). */
function spendRows(db: Db, references: string[]) {
  return sql<
    { reference: string; id: number | null; state: string | null; channel: string | null }
  >`select t.reference, m.id, m.state, m.channel
      from ledger_transfers t
      left join notify_messages m on m.source = 'ledger:' || t.id and m.kind = 'spend'
     where t.reference = any(${references})
       and t.kind in ('purchase', 'shower', 'electricity', 'water')`.execute(db);
}

/** The stand-in and the checks. */
export interface NotifyCheck {
  env: Record<string, string>;
  standin: WechatStandIn;
  bind(db: Db, cardAccountIds: number[]): Promise<void>;
  check(db: Db, references: string[]): Promise<{ failures: string[]; summary: string }>;
  close(): Promise<void>;
}

/** Starts the stand-in. */
export function startNotifyCheck(): NotifyCheck {
  const standin = startWechatStandIn();
  standin.control.templates.add(TEMPLATE);
  const env = { ...standin.env, WECHAT_TEMPLATE_SPEND: TEMPLATE, NOTIFY_POLL_MS: "500" };
  return {
    env,
    standin,
    async bind(db, cardAccountIds) {
      const school = await sql<{ school_id: number; id: number; account_id: number | null }>`
        select id, school_id, account_id from card_accounts where id = any(${cardAccountIds})`
        .execute(db);
      for (const card of school.rows) {
        let accountId = card.account_id;
        if (accountId === null) {
          // A login account nobody signs in to: the password hash is not one any password matches.
          const made = await sql<
            { id: number }
          >`insert into accounts (phone, school_id, password_hash)
            values (${`199${String(card.id).padStart(8, "0")}`}, ${card.school_id}, '!soak')
            returning id`.execute(db);
          accountId = made.rows[0].id;
          await sql`update card_accounts set account_id = ${accountId}, bound_at = now()
            where id = ${card.id}`.execute(db);
        }
        await sql`insert into account_wechat (account_id, openid)
          values (${accountId}, ${`oSoak${String(card.id).padStart(10, "0")}`})
          on conflict do nothing`.execute(db);
        // A soak at night must not hold its messages for the morning summary.
        await sql`insert into notify_settings (account_id, quiet) values (${accountId}, false)
          on conflict (account_id) do update set quiet = false`.execute(db);
      }
    },
    async check(db, references) {
      const failures: string[] = [];
      const config = testConfig({ env: { ...testConfig().env, ...env } });
      const ctx = {
        db,
        config,
        mailer: createMailer({ db, config }),
        wechat: buildMessenger({ db, config }),
      };
      // Another instance, after the leases of any killed worker ran out. The last server may still
      // be reading a feed (a round then finds nothing to take): rounds go on until every payment's
      // message has left the queue, or SETTLE_MS passed (what is still queued then is reported).
      const later = () => new Date(Date.now() + DEFAULT_POLICY.leaseMs + 1000);
      await horizonPassesNow(db);
      const active: readonly string[] = MESSAGE_QUEUE.active;
      const until = Date.now() + SETTLE_MS;
      let rows = await spendRows(db, references);
      while (Date.now() < until) {
        if (await runNotifierRound({ ...ctx, now: later }) > 0) continue;
        rows = await spendRows(db, references);
        if (rows.rows.every((r) => r.id !== null && !active.includes(r.state!))) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      rows = await spendRows(db, references);
      const byRef = new Map<string, typeof rows.rows>();
      for (const r of rows.rows) byRef.set(r.reference, [...(byRef.get(r.reference) ?? []), r]);
      const accepted = new Map<string, number>();
      for (const m of standin.messages) {
        if (m.template_id === TEMPLATE && m.client_msg_id) {
          accepted.set(m.client_msg_id, (accepted.get(m.client_msg_id) ?? 0) + 1);
        }
      }
      let delivered = 0;
      for (const reference of references) {
        if (!byRef.has(reference)) failures.push(`payment ${reference} has no spend in the ledger`);
      }
      for (const [reference, found] of byRef) {
        const messages = found.filter((r) => r.id !== null);
        if (messages.length !== 1) {
          failures.push(`payment ${reference} has ${messages.length} 消费提醒`);
          continue;
        }
        const [m] = messages;
        if (m.state !== "sent" || m.channel !== "wechat") {
          failures.push(`消费提醒 of ${reference} ended ${m.state}/${m.channel}`);
          continue;
        }
        const shown = accepted.get(`yxt${m.id}`) ?? 0;
        if (shown !== 1) failures.push(`消费提醒 of ${reference} shown ${shown} times on WeChat`);
        else delivered++;
      }
      const duplicates = standin.log.filter((l) => l === "send 0 duplicate").length;
      return {
        // The first ones, and how many more: a broken notifier fails every payment alike.
        failures: failures.length > 20
          ? [...failures.slice(0, 19), `… and ${failures.length - 19} more payments like these`]
          : failures,
        summary: `${delivered} of ${references.length} acknowledged payments each had one ` +
          `消费提醒 delivered on WeChat (${duplicates} resends after kills answered as duplicates)`,
      };
    },
    close: () => standin.close(),
  };
}

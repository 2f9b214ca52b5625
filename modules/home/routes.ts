import { Hono } from "hono";
import type { Db } from "../platform/database.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { serveAsset } from "../platform/assets.ts";
import { requireStudent, signOut } from "../security/mod.ts";
import { findAccount, wechatLoginOf } from "../account/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { getBalance } from "../wallet/mod.ts";
import type { Config } from "../platform/config.ts";

/** The signed-in account and its bound card; a vanished account signs the browser out. */
async function whoAmI(db: Db, accountId: number) {
  const account = await findAccount(db, accountId);
  const card = account ? await findBoundCard(db, account.id) : null;
  return { account, card };
}

/** 智校园 (`/`) and 我的 (`/me`): the two tabs of the bottom bar. */
export function homeRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();

  app.get("/", requireStudent, async (c) => {
    const { account, card } = await whoAmI(db, c.get("accountId")!);
    if (!account) {
      await signOut(c, deps, "student");
      return c.redirect("/login", 303);
    }
    // Manual: 绑定成功后请立即修改一卡通密码、绑定邮箱 — until both are done.
    const reminders = card
      ? { cardPassword: card.passwordIsDefault, email: account.email === null }
      : null;
    const balance = card ? await getBalance(db, card.cardAccountId) : null;
    return render(c, "home/home", { account, card, reminders, balance }, {
      title: "智校园",
      tab: "home",
    });
  });

  // The page the service worker shows when a page cannot load offline (the shell it caches).
  app.get("/offline", (c) =>
    render(c, "home/offline", {}, {
      title: "网络不可用",
      tab: null,
      headers: { "cache-control": "no-cache" },
    }));

  // At the root, so that it may answer for every student page (a worker's scope is its folder).
  app.get("/sw.js", (c) => {
    const res = serveAsset("sw.js", c.req.header("accept-encoding"));
    if (!res) return c.notFound();
    res.headers.set("cache-control", "no-cache");
    return res;
  });

  app.get("/me", requireStudent, async (c) => {
    const { account, card } = await whoAmI(db, c.get("accountId")!);
    if (!account) {
      await signOut(c, deps, "student");
      return c.redirect("/login", 303);
    }
    const wechat = await wechatLoginOf(db, account.id);
    return render(c, "home/me", { account, card, wechat }, { title: "我的", tab: "me" });
  });

  return app;
}

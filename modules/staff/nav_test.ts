import assert from "node:assert/strict";
import { makeStaff, setupApp } from "../testkit/mod.ts";
import { ROLES } from "./mod.ts";

/** The sidebar's departments and their entries, in the order the page shows them. */
function sidebar(html: string): Array<{ group: string; items: string[] }> {
  const nav = /<nav class="admin-side"[^>]*>([\s\S]*?)<\/nav>/.exec(html)?.[1] ?? "";
  const out: Array<{ group: string; items: string[] }> = [];
  for (const m of nav.matchAll(/<h2[^>]*>([^<]+)<\/h2>\s*<ul[^>]*>([\s\S]*?)<\/ul>/g)) {
    out.push({ group: m[1], items: [...m[2].matchAll(/<a [^>]*>([^<]+)<\/a>/g)].map((a) => a[1]) });
  }
  return out;
}

Deno.test("the console's sidebar groups pages by department, in order, for the member's roles", async () => {
  await using w = await setupApp();
  const admin = await makeStaff(w, "all", [
    ROLES.cardOffice,
    ROLES.infoCentre,
    ROLES.finance,
    ROLES.sysadmin,
  ]);
  const groups = sidebar(await admin.client.page("/admin"));
  assert.deepEqual(groups.map((g) => g.group), ["一卡通中心", "财务处", "水电", "系统"]);
  assert.deepEqual(groups[0].items.slice(0, 2), ["一卡通", "一信通账号"]);
  assert.equal(groups[1].items[0], "概览");
  assert.ok(groups[1].items.includes("营业日报") && groups[1].items.includes("账务核验"));
  // Billing names no department: its pages are 水电's by their path.
  assert.ok(groups[2].items.includes("宿舍房间"));
  assert.ok(groups[3].items.includes("审计日志") && groups[3].items.includes("终端"));

  const finance = await makeStaff(w, "fin", [ROLES.finance]);
  const seen = sidebar(await finance.client.page("/admin/finance/reports"));
  // 财务处 also follows 毕业离校 (its payout list), reads 水电's income report, and of 系统 the
  // 卡类别 and 餐次 it may view (not edit) and the audit log.
  assert.deepEqual(seen.map((g) => g.group), ["一卡通中心", "财务处", "水电", "系统"]);
  assert.deepEqual(seen[0].items, ["毕业离校"]);
  assert.ok(seen[2].items.includes("水电收入报表") && !seen[2].items.includes("宿舍房间"));
  assert.deepEqual(seen[3].items, ["卡类别", "餐次", "审计日志"]);
});

Deno.test("the page's own entry is marked current, the longest path first (退款, not 概览)", async () => {
  await using w = await setupApp();
  const finance = await makeStaff(w, "fin", [ROLES.finance]);
  const html = await finance.client.page("/admin/finance/refunds");
  const current = [...html.matchAll(/<a href="([^"]+)" class="is-active" aria-current="page">/g)];
  assert.deepEqual(current.map((m) => m[1]), ["/admin/finance/refunds"]);
  const home = await finance.client.page("/admin/finance");
  assert.match(home, /<a href="\/admin\/finance" class="is-active" aria-current="page">概览/);
});

Deno.test("every console page has a skip link to main; the header search is there for card roles only", async () => {
  await using w = await setupApp();
  const clerk = await makeStaff(w, "clerk", [ROLES.cardOffice]);
  const html = await clerk.client.page("/admin");
  assert.match(html, /<a class="skip-link" href="#main">跳到正文<\/a>/);
  assert.match(html, /<main id="main"/);
  assert.match(
    html,
    /<form class="admin-search" method="get" action="\/admin\/cards" role="search">/,
  );
  assert.match(html, /aria-keyshortcuts="\/"/);
  // The box keeps what was searched on the results page.
  assert.match(await clerk.client.page("/admin/cards?q=2024"), /data-shortcut="\/" value="2024"/);

  const finance = await makeStaff(w, "fin", [ROLES.finance]);
  assert.doesNotMatch(await finance.client.page("/admin"), /admin-search/);
  // Signed out: the sign-in page has no sidebar or search, but still its skip link.
  const login = await w.client().page("/admin/login");
  assert.doesNotMatch(login, /admin-side|admin-search/);
  assert.match(login, /skip-link/);
});

/**
 * Student-page checks shared by the journeys.
 *
 * axe-core in the page under test: `await assertAccessible(page, "余额")` injects axe (from
 * node_modules, pinned in deno.json; never fetched by the page) and fails on any serious or
 * critical violation, naming the rule and the offending elements. `checkPage(page, label, bar)`
 * adds the rest of issue 16's page rules: one h1, tap targets of at least 44 px, and the bottom
 * bar (智校园 / 我的) shown or absent as the page requires.
 */
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import type { Page } from "./_support.ts";

const require = createRequire(import.meta.url);
let axeSource: string | null = null;

async function source(): Promise<string> {
  axeSource ??= await Deno.readTextFile(require.resolve("axe-core/axe.min.js"));
  return axeSource;
}

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[]; failureSummary?: string }[];
}

/**
 * Runs axe on the current page: its serious and critical violations, each as the rule, its
 * impact and help, then the offending nodes (selector and why), one per line.
 */
export async function axeProblems(page: Page): Promise<string[]> {
  const already = await page.evaluate(() => "axe" in globalThis);
  // Evaluated over the DevTools protocol: the page's CSP (script-src 'self') stays as it is.
  if (!already) await page.evaluate(await source());
  const violations = await page.evaluate(async () => {
    // deno-lint-ignore no-explicit-any
    const { axe, document } = globalThis as any;
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations as AxeViolation[];
  }) as AxeViolation[];
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  return bad.map((v) =>
    `${v.id} (${v.impact}): ${v.help}\n` +
    v.nodes.slice(0, 5).map((n) => `    ${n.target.join(" ")}: ${n.failureSummary ?? ""}`).join(
      "\n",
    )
  );
}

/** Runs axe on the current page; throws when it finds a serious or critical violation. */
export async function assertAccessible(page: Page, label: string): Promise<void> {
  const lines = await axeProblems(page);
  if (lines.length === 0) return;
  throw new Error(`axe on ${label} (${page.url()}):\n${lines.join("\n")}`);
}

/** Visible controls smaller than 44 px (links inside a sentence are exempt, as in WCAG 2.5.5). */
function smallTargets(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const doc = (globalThis as any).document;
    const out: string[] = [];
    for (const el of doc.querySelectorAll("a, button, input, select")) {
      if (el.type === "hidden" || el.closest("[hidden]")) continue;
      const target = (el.type === "radio" || el.type === "checkbox") ? el.closest("label") : el;
      if (!target) continue;
      const r = target.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const parent = el.parentElement;
      const inline = el.tagName === "A" && parent && ["P", "LI", "SPAN"].includes(parent.tagName) &&
        parent.textContent.trim().length > el.textContent.trim().length;
      if (inline) continue;
      if (r.height < 44 || r.width < 44) {
        out.push(
          `${el.tagName.toLowerCase()} "${el.textContent.trim() || el.name}" ${
            Math.round(r.width)
          }×${Math.round(r.height)}`,
        );
      }
    }
    return out;
  });
}

/** The page's checks: axe, one h1, tap targets, and whether the bottom bar is there. */
export async function checkPage(page: Page, label: string, tabbar: boolean): Promise<void> {
  await assertAccessible(page, label);
  assert.equal(await page.locator("h1").count(), 1, `${label}: one h1`);
  assert.deepEqual(await smallTargets(page), [], `${label}: tap targets of at least 44 px`);
  const bar = await page.getByRole("navigation", { name: "主导航" }).count();
  assert.equal(bar, tabbar ? 1 : 0, `${label}: bottom bar ${tabbar ? "shown" : "absent"}`);
}

/**
 * Accepts the in-page confirmation dialog (data-confirm forms: 挂失, 销户, 补卡…) by its button.
 * There is no window.confirm any more: a native dialog would be dismissed and the form not sent.
 */
export async function acceptConfirm(page: Page, okLabel = "确定"): Promise<void> {
  await page.getByRole("alertdialog").getByRole("button", { name: okLabel, exact: true }).click();
}

/**
 * Student-page checks shared by the journeys.
 *
 * axe-core in the page under test: `await assertAccessible(page, "余额")` injects axe (from
 * node_modules, pinned in deno.json; never fetched by the page) and fails on any serious or
 * critical violation, naming the rule and the offending elements.
 */
import { createRequire } from "node:module";
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

/** Runs axe on the current page; throws when it finds a serious or critical violation. */
export async function assertAccessible(page: Page, label: string): Promise<void> {
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
  if (bad.length === 0) return;
  const lines = bad.map((v) =>
    `${v.id} (${v.impact}): ${v.help}\n` +
    v.nodes.slice(0, 5).map((n) => `    ${n.target.join(" ")}: ${n.failureSummary ?? ""}`).join(
      "\n",
    )
  );
  throw new Error(`axe on ${label} (${page.url()}):\n${lines.join("\n")}`);
}

/**
 * Accepts the in-page confirmation dialog (data-confirm forms: 挂失, 销户, 补卡…) by its button.
 * There is no window.confirm any more: a native dialog would be dismissed and the form not sent.
 */
export async function acceptConfirm(page: Page, okLabel = "确定"): Promise<void> {
  await page.getByRole("alertdialog").getByRole("button", { name: okLabel, exact: true }).click();
}

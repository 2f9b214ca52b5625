import type { Context } from "hono";

import type { AppEnv } from "./http.ts";
import type { FieldErrors } from "./views.ts";

/** The first Chinese message for each field of a failed zod parse. */
export function fieldErrors(
  error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> },
): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of error.issues) {
    const field = String(issue.path[0] ?? "_form");
    if (!(field in out)) out[field] = issue.message;
  }
  return out;
}

/**
 * A zValidator hook that re-renders the same form with messages next to the fields and the
 * person's input kept, instead of zod's JSON: `zValidator("form", schema, formErrorsHook(show))`.
 */
export function formErrorsHook(
  show: (
    c: Context<AppEnv>,
    errors: FieldErrors,
    input: Record<string, string>,
  ) => Response | Promise<Response>,
) {
  return (
    // deno-lint-ignore no-explicit-any
    result: { success: boolean; error?: any; data: unknown },
    // deno-lint-ignore no-explicit-any
    c: Context<any>,
  ): Response | Promise<Response> | undefined => {
    if (result.success) return undefined;
    const raw = (result.data ?? {}) as Record<string, unknown>;
    const input: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v === "string" && k !== "_csrf" && !/password|密码/i.test(k)) {
        input[k] = v.slice(0, 200);
      }
    }
    return show(c as Context<AppEnv>, fieldErrors(result.error), input);
  };
}

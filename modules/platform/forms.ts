import type { Context } from "hono";

import type { AppEnv } from "./http.ts";
import { DomainError, NotFoundError } from "./errors.ts";
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

/**
 * Runs a form's action and answers: a `DomainError` it throws comes back through `invalid` as the
 * same form with the message at its field (`_form` when it names none; `err.status` is the status
 * to answer with when it is not 422); a `NotFoundError` and
 * anything else go on to the error page; success goes to `done` (usually a 303 redirect).
 */
export async function runForm<T>(
  action: () => Promise<T>,
  invalid: (errors: FieldErrors, err: DomainError) => Response | Promise<Response>,
  done: (result: T) => Response | Promise<Response>,
): Promise<Response> {
  let result: T;
  try {
    result = await action();
  } catch (err) {
    if (err instanceof DomainError && !(err instanceof NotFoundError)) {
      return await invalid({ [err.field ?? "_form"]: err.userMessage }, err);
    }
    throw err;
  }
  return await done(result);
}

/**
 * A small browser-like HTTP client for the bench and the soak: keeps cookies, reads the CSRF
 * token from the page it was given (like a browser submitting a form), never follows redirects.
 */

/** A cookie jar bound to one server. */
export class WebClient {
  /** The HTTP client every WebClient uses (e.g. one trusting the drill's self-signed certificate). */
  static httpClient: Deno.HttpClient | undefined;
  readonly cookies = new Map<string, string>();
  constructor(readonly baseUrl: string) {}

  /** The Cookie header value of the jar. */
  get cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  #store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === "" || attrs.some((a) => /max-age=0\b/i.test(a.trim()))) {
        this.cookies.delete(name);
      } else this.cookies.set(name, value);
    }
  }

  /** GET a path; the body is read into `text`. */
  async get(
    path: string,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; text: string }> {
    const res = await fetch(this.baseUrl + path, {
      headers: { ...headers, cookie: this.cookieHeader },
      redirect: "manual",
      client: WebClient.httpClient,
    });
    this.#store(res);
    return { res, text: await res.text() };
  }

  /** POST a urlencoded form; `_csrf` is added from `csrfFrom` (a page's HTML) when given. */
  async post(
    path: string,
    fields: Record<string, string>,
    options: { csrfFrom?: string; headers?: Record<string, string> } = {},
  ): Promise<{ res: Response; text: string }> {
    const body = new URLSearchParams(fields);
    if (options.csrfFrom !== undefined) {
      const token = csrfOf(options.csrfFrom);
      if (!token) throw new Error(`No CSRF token in the page before POST ${path}`);
      body.set("_csrf", token);
    }
    const res = await fetch(this.baseUrl + path, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        ...options.headers,
        cookie: this.cookieHeader,
      },
      body,
      redirect: "manual",
      client: WebClient.httpClient,
    });
    this.#store(res);
    return { res, text: await res.text() };
  }

  /** GET a form page, then POST it back with its CSRF token and `fields`. */
  async submit(
    pagePath: string,
    actionPath: string,
    fields: Record<string, string>,
  ): Promise<{ res: Response; text: string }> {
    const page = await this.get(pagePath);
    if (page.res.status !== 200) throw new Error(`GET ${pagePath} answered ${page.res.status}`);
    return this.post(actionPath, fields, { csrfFrom: page.text });
  }
}

/** The CSRF token of a page: the `_csrf` hidden input or the htmx header in the layout. */
export function csrfOf(html: string): string | null {
  const input = /name="_csrf"\s+value="([^"]+)"/.exec(html) ??
    /value="([^"]+)"\s+name="_csrf"/.exec(html);
  if (input) return input[1];
  const hx = /X-CSRF-Token&quot;\s*:\s*&quot;([^&]+)&quot;/i.exec(html) ??
    /"X-CSRF-Token"\s*:\s*"([^"]+)"/i.exec(html);
  return hx ? hx[1] : null;
}

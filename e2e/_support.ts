/**
 * Browser-test support, shared by every journey in e2e/:
 *
 * - `startServer()` runs the real server (`deno run -A main.ts`) as a subprocess on free ports
 *   with a fresh temporary DATA_DIR (embedded PGlite, demo data seeded unless `seedDemo: false`)
 *   and waits for /healthz. Pass `smtpUrl` to send mail to a test SMTP server, `env` for more.
 * - `startTestSmtpServer()` (re-exported from the mail module) is a real SMTP server on loopback:
 *   `await smtp.nextMail("a@qq.com")` gives the next mail to that address, decoded.
 * - `openBrowser()` launches Debian's Chromium (`/usr/bin/chromium`, never a download) through
 *   playwright-core, headless, with a phone viewport (390×844) and a WeChat user agent.
 * - `journey(name, fn)` wires it all into a Deno test that cleans up after itself; `shot(label)`
 *   saves a screenshot under e2e/artifacts/<name>/ (gitignored, kept as CI artefacts).
 *
 * Example:
 *   journey("card binding", { smtp: true }, async ({ server, page, shot, smtp }) => {
 *     await page.goto(server.url("/login"));
 *     await shot("login");
 *   });
 */
import { chromium } from "playwright-core";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startTestSmtpServer, type TestSmtpServer } from "../modules/mail/mod.ts";

export { startTestSmtpServer, type TestSmtpServer };
export type { Page };

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const ARTIFACTS = join(ROOT, "e2e", "artifacts");

/** WeChat's in-app browser on Android (XWeb), as the student's phone announces itself. */
export const WECHAT_USER_AGENT =
  "Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 " +
  "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 " +
  "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.50.2701(0x28003252) WeChat/arm64 " +
  "Weixin NetType/WIFI Language/zh_CN ABI/arm64";

/** A phone-sized viewport (iPhone 12–14 class). */
export const VIEWPORT = { width: 390, height: 844 };

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** A free TCP port on loopback (the OS picks it; we release it for the server to bind). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** A running server subprocess. */
export interface RunningServer {
  /** `http://127.0.0.1:<port>` */
  baseUrl: string;
  port: number;
  terminalPort: number;
  dataDir: string;
  /** Absolute URL of a path on this server. */
  url(path: string): string;
  /** Everything the server printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM (graceful shutdown), SIGKILL after 10 s; removes the data directory. */
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** SMTP_URL for the server; unset = development outbox. */
  smtpUrl?: string;
  /** Seed demo data on the fresh database (default true). */
  seedDemo?: boolean;
  /** More environment variables. */
  env?: Record<string, string>;
  /** How long to wait for /healthz (default 90 s: the first start migrates a new database). */
  startTimeoutMs?: number;
}

/**
 * Starts `deno run -A main.ts` on free ports with a fresh embedded database. A port is free when
 * chosen but another process may take it before the server binds it: then new ports, up to three
 * tries.
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  for (let attempt = 1;; attempt++) {
    try {
      return await spawnServer(options);
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt === 3) throw err;
    }
  }
}

/** The server could not bind a port chosen by `freePort` (taken in the meantime). */
class PortTaken extends Error {}

async function spawnServer(options: ServerOptions): Promise<RunningServer> {
  const port = freePort();
  const terminalPort = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "yxt-e2e-" });
  const baseUrl = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    PORT: String(port),
    TERMINAL_PORT: String(terminalPort),
    HOST: "127.0.0.1",
    DATA_DIR: dataDir,
    BASE_URL: baseUrl,
    DATABASE_URL: "",
    SMTP_URL: options.smtpUrl ?? "",
    SEED_DEMO: options.seedDemo === false ? "0" : "1",
    LOG_LEVEL: "info",
    NO_COLOR: "1",
    ...options.env,
  };
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();

  let output = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
  for (;;) {
    if (exited) {
      await drained;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      if (/Address already in use/.test(output)) throw new PortTaken(output);
      throw new Error(`Server exited before it was ready:\n${output}`);
    }
    try {
      const res = await fetch(`${baseUrl}/healthz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await status;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      throw new Error(`Server did not become healthy in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    baseUrl,
    port,
    terminalPort,
    dataDir,
    url: (path) => `${baseUrl}${path}`,
    output: () => output,
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => {
          if (!exited) child.kill("SIGKILL");
        }, 10_000);
        await status;
        clearTimeout(timer);
      }
      await drained;
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** A headless Chromium with one phone-like WeChat context. */
export interface OpenBrowser {
  browser: Browser;
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

/** Launches /usr/bin/chromium (override with CHROMIUM_PATH) with a WeChat phone context. */
export async function openBrowser(): Promise<OpenBrowser> {
  const browser = await chromium.launch({
    executablePath: Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const context = await browser.newContext({
    viewport: VIEWPORT,
    userAgent: WECHAT_USER_AGENT,
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 2,
    locale: "zh-CN",
    timezoneId: "Asia/Shanghai",
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  return {
    browser,
    context,
    page,
    async close() {
      await context.close().catch(() => {});
      await browser.close().catch(() => {});
    },
  };
}

/** What a journey's body gets. */
export interface JourneyContext {
  server: RunningServer;
  page: Page;
  context: BrowserContext;
  /** The loopback SMTP server, when the journey asked for `smtp: true`. */
  smtp: TestSmtpServer | null;
  /** Saves a full-page screenshot as e2e/artifacts/<journey>/<nn>-<label>.png. */
  shot(label: string): Promise<string>;
}

/** File-system-safe version of a name. */
function slug(name: string): string {
  return name.replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "").slice(0, 60) || "journey";
}

/**
 * Declares a browser test: starts an SMTP server (optional), the app server and Chromium, runs
 * `fn`, saves a screenshot named "failure" if it throws, and stops everything.
 */
export function journey(
  name: string,
  options: { smtp?: boolean; server?: Omit<ServerOptions, "smtpUrl"> },
  fn: (ctx: JourneyContext) => Promise<void>,
): void {
  Deno.test({
    name,
    // Chromium and the server subprocess run their own timers and sockets.
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dir = join(ARTIFACTS, slug(name));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.mkdir(dir, { recursive: true });
      const smtp = options.smtp ? await startTestSmtpServer() : null;
      let server: RunningServer | null = null;
      let browser: OpenBrowser | null = null;
      let n = 0;
      try {
        server = await startServer({ ...options.server, smtpUrl: smtp?.url });
        browser = await openBrowser();
        const page = browser.page;
        const shot = async (label: string) => {
          n += 1;
          const path = join(dir, `${String(n).padStart(2, "0")}-${slug(label)}.png`);
          await page.screenshot({ path, fullPage: true });
          return path;
        };
        try {
          await fn({ server, page, context: browser.context, smtp, shot });
        } catch (err) {
          await page.screenshot({ path: join(dir, "failure.png"), fullPage: true }).catch(() => {});
          await Deno.writeTextFile(join(dir, "server.log"), server.output()).catch(() => {});
          throw err;
        }
      } finally {
        await browser?.close();
        await server?.stop();
        await smtp?.close();
      }
    },
  });
}

/**
 * The code of the next mail to `to` that carries one. The notifier's mails (security notices and
 * other 消息通知 for a student without a WeChat) may arrive in between: they are read and skipped.
 */
export async function nextCode(
  smtp: TestSmtpServer,
  to: string,
  timeoutMs = 20_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const mail = await smtp.nextMail(to, Math.max(1, deadline - Date.now()));
    if (/验证码：\d{6}/.test(mail.text)) return codeFrom(mail.text);
  }
}

/** The 6-digit code of a mail sent by 一信通 (“验证码：123456”). */
export function codeFrom(text: string): string {
  const m = /验证码：(\d{6})/.exec(text);
  if (!m) throw new Error(`No code in mail: ${text}`);
  return m[1];
}

/** The demo admin's new password, set by `signInDemoAdmin` at the first sign-in. */
export const DEMO_ADMIN_NEW_PASSWORD = "Admin67890x";

/**
 * Signs the demo admin in on `page`. Its password is published, so the console asks for a new one
 * before anything else: set it, as a new deployer would, and land on the console home.
 */
export async function signInDemoAdmin(page: Page, server: RunningServer): Promise<void> {
  await page.goto(server.url("/admin/login"));
  await page.getByLabel("用户名").fill("admin");
  await page.getByLabel("密码").fill("Admin12345");
  await page.getByRole("button", { name: "登录" }).click();
  await page.waitForURL(server.url("/admin/password"));
  await page.getByLabel("原密码").fill("Admin12345");
  await page.getByLabel("新密码").fill(DEMO_ADMIN_NEW_PASSWORD);
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(server.url("/admin"));
}

/** The console's desk: the office's 1366×768 screens. */
export const DESK = { width: 1366, height: 768 };

/** The initial password `staffMember` gives (the member replaces it at the first sign-in). */
export const STAFF_START_PASSWORD = "Start12345";

/**
 * Adds a staff member on 员工账号 as the signed-in `admin`, with one role (its label, e.g. 财务处),
 * and signs them in on a browser context of their own.
 */
export async function staffMember(
  admin: Page,
  server: RunningServer,
  member: { username: string; name: string; role: string },
): Promise<Page> {
  await admin.goto(server.url("/admin/staff"));
  await admin.getByLabel("用户名", { exact: true }).fill(member.username);
  await admin.getByLabel("姓名", { exact: true }).fill(member.name);
  await admin.getByLabel("初始密码").fill(STAFF_START_PASSWORD);
  await admin.getByRole("checkbox", { name: member.role, exact: true }).check();
  await admin.getByRole("button", { name: "创建" }).click();
  await admin.getByRole("cell", { name: member.username, exact: true }).waitFor();
  return await signInFirstTime(admin, server, member.username);
}

/**
 * Signs a new console user (given STAFF_START_PASSWORD) in on a browser context of their own (their
 * own cookie), setting `${username}Pw2026` as the console asks the first time.
 */
export async function signInFirstTime(
  admin: Page,
  server: RunningServer,
  username: string,
): Promise<Page> {
  const own = await admin.context().browser()!.newContext({
    viewport: DESK,
    locale: "zh-CN",
    timezoneId: "Asia/Shanghai",
  });
  const page = await own.newPage();
  await page.goto(server.url("/admin/login"));
  await page.getByLabel("用户名").fill(username);
  await page.getByLabel("密码").fill(STAFF_START_PASSWORD);
  await page.getByRole("button", { name: "登录" }).click();
  await page.waitForURL(/\/admin\/password$/);
  await page.getByLabel("原密码").fill(STAFF_START_PASSWORD);
  await page.getByLabel("新密码").fill(`${username}Pw2026`);
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(server.url("/admin"));
  return page;
}

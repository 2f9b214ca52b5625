/**
 * A real SMTP server on loopback for tests (npm:smtp-server): it accepts every message and keeps
 * it, so a test reads the mail exactly as a mail server received it. Also a "silent" server that
 * accepts connections and never answers, to prove slow SMTP never hangs a page.
 */

/** A mail as the test server received it, decoded. */
export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  raw: string;
}

/** A running test SMTP server. */
export interface TestSmtpServer {
  /** `smtp://127.0.0.1:<port>` for SMTP_URL. */
  url: string;
  port: number;
  messages: ReceivedMail[];
  /** Resolves with the next mail to `to` (or to anyone) that arrives after the call, or one already waiting unread. */
  nextMail(to?: string, timeoutMs?: number): Promise<ReceivedMail>;
  /** While true, the server refuses every recipient (a failing mail server). */
  refuse: boolean;
  close(): Promise<void>;
}

function decodeWords(value: string): string {
  return value.replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=\s*/g, (_m, charset, enc, data) => {
    const bytes = enc.toUpperCase() === "B"
      ? Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0))
      : qpBytes(data.replace(/_/g, " "));
    return new TextDecoder(charset).decode(bytes);
  });
}

function qpBytes(text: string): Uint8Array {
  const soft = text.replace(/=\r?\n/g, "");
  const out: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const ch = soft[i];
    if (ch === "=" && /^[0-9A-Fa-f]{2}$/.test(soft.slice(i + 1, i + 3))) {
      out.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(...new TextEncoder().encode(ch));
    }
  }
  return new Uint8Array(out);
}

/** Decodes a single-part text mail (what the mailer sends): headers, charset and transfer encoding. */
export function parseMail(raw: string, envelope: { from: string; to: string[] }): ReceivedMail {
  const split = raw.search(/\r?\n\r?\n/);
  const head = raw.slice(0, split).replace(/\r?\n[ \t]+/g, " ");
  const body = raw.slice(split).replace(/^\r?\n\r?\n/, "");
  const header = (name: string) =>
    new RegExp(`^${name}:\\s*(.*)$`, "im").exec(head)?.[1]?.trim() ?? "";
  const encoding = header("Content-Transfer-Encoding").toLowerCase();
  const charset = /charset="?([^";]+)"?/i.exec(header("Content-Type"))?.[1] ?? "utf-8";
  let bytes: Uint8Array;
  if (encoding === "base64") {
    bytes = Uint8Array.from(atob(body.replace(/\s+/g, "")), (ch) => ch.charCodeAt(0));
  } else if (encoding === "quoted-printable") {
    bytes = qpBytes(body);
  } else {
    bytes = new TextEncoder().encode(body);
  }
  return {
    from: envelope.from,
    to: envelope.to,
    subject: decodeWords(header("Subject")),
    text: new TextDecoder(charset).decode(bytes).replace(/\r\n/g, "\n"),
    raw,
  };
}

/** Starts an SMTP server on a free loopback port. */
export async function startTestSmtpServer(): Promise<TestSmtpServer> {
  const { SMTPServer } = await import("smtp-server");
  const messages: ReceivedMail[] = [];
  const waiters: Array<{ to?: string; resolve: (m: ReceivedMail) => void }> = [];
  const read = new Set<ReceivedMail>();
  const state = { refuse: false };

  const deliver = (mail: ReceivedMail) => {
    messages.push(mail);
    const i = waiters.findIndex((w) => !w.to || mail.to.includes(w.to.toLowerCase()));
    if (i >= 0) {
      read.add(mail);
      waiters.splice(i, 1)[0].resolve(mail);
    }
  };

  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onRcptTo(_address, _session, callback) {
      if (state.refuse) {
        const err = new Error("Mailbox unavailable") as Error & { responseCode: number };
        err.responseCode = 550;
        return callback(err);
      }
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Uint8Array[] = [];
      stream.on("data", (c: Uint8Array) => chunks.push(c));
      stream.on("end", () => {
        const raw = new TextDecoder().decode(
          new Uint8Array(chunks.flatMap((c) => Array.from(c))),
        );
        const env = session.envelope;
        deliver(parseMail(raw, {
          from: env.mailFrom ? env.mailFrom.address : "",
          to: env.rcptTo.map((r) => r.address.toLowerCase()),
        }));
        callback();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      // deno-lint-ignore no-explicit-any
      resolve(((server as any).server.address() as { port: number }).port);
    });
  });

  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    messages,
    get refuse() {
      return state.refuse;
    },
    set refuse(v: boolean) {
      state.refuse = v;
    },
    nextMail(to, timeoutMs = 10_000) {
      const waiting = messages.find((m) =>
        !read.has(m) && (!to || m.to.includes(to.toLowerCase()))
      );
      if (waiting) {
        read.add(waiting);
        return Promise.resolve(waiting);
      }
      return new Promise((resolve, reject) => {
        const entry = { to, resolve: (m: ReceivedMail) => (clearTimeout(timer), resolve(m)) };
        const timer = setTimeout(() => {
          const i = waiters.indexOf(entry);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`No mail to ${to ?? "anyone"} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(entry);
      });
    },
    close() {
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A TCP server that accepts connections and never says a word: the slowest SMTP server. */
export function startSilentServer(): { url: string; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) conns.push(conn);
    } catch {
      // listener closed
    }
  })();
  return {
    url: `smtp://127.0.0.1:${listener.addr.port}`,
    close() {
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed by the client
        }
      }
      listener.close();
    },
  };
}

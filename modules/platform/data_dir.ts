/**
 * DATA_DIR of the embedded database: private to the user that runs the server, and held by one
 * process at a time. PGlite is one process with no locking of its own: a second process opening
 * the same directory reads a stale copy (and two writers corrupt it). So whoever opens it first
 * holds an OS lock (flock) on `DATA_DIR/yxt.lock` for as long as it runs; the kernel releases the
 * lock when the process ends, even by SIGKILL, so a stale pid in the file never blocks anyone.
 */
import { join } from "node:path";
import { timingSafeEqual } from "node:crypto";

const LOCK_FILE = "yxt.lock";

/** What the holder of a data directory says about itself in the lock file. */
export interface HolderInfo {
  pid: number;
  /** The program holding it, e.g. "main.ts" (the server) or "verify_cli.ts". */
  program: string;
  since: string;
  /** Set by a running server: where it answers, and the token of its operator endpoints. */
  url?: string;
  token?: string;
}

/** Refused because another process holds the data directory; the message is one line. */
export class DataDirBusyError extends Error {
  constructor(readonly dir: string, readonly holder: HolderInfo | null) {
    const who = holder
      ? `${
        holder.program === "main.ts" ? "the running server" : holder.program
      } (pid ${holder.pid}, since ${holder.since})`
      : "another process";
    super(
      `Cannot open ${dir}: ${who} holds this data directory; ` +
        (holder?.program === "main.ts" ? "stop the server first" : "wait for it to finish"),
    );
  }
}

/** A held data directory; `release` (or the end of the process) lets the next one in. */
export interface DataDirLock {
  dir: string;
  /** Records the server's address and operator token in the lock file (0600). */
  announce(info: { url: string; token: string }): void;
  release(): void;
}

/** The program name of this process, for the lock file and the refusal line. */
function programName(): string {
  return Deno.mainModule.split("/").pop() ?? "deno";
}

/**
 * Makes `dir` private: created 0700 if missing; then the directory and everything under it is
 * set to 0700 (directories) / 0600 (files) where it was open to group or others. PGlite creates
 * its files 0666 whatever the umask, so this runs at start and again after PGlite has opened.
 * Returns how many modes were repaired.
 */
export function securePrivateDir(dir: string): number {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  let repaired = 0;
  const fix = (path: string, isDir: boolean) => {
    const st = Deno.lstatSync(path);
    if (st.isSymlink || st.mode === null) return;
    if ((st.mode & 0o077) !== 0) {
      Deno.chmodSync(path, isDir ? 0o700 : st.mode & 0o700);
      repaired++;
    }
  };
  const walk = (path: string) => {
    for (const e of Deno.readDirSync(path)) {
      const child = join(path, e.name);
      if (e.isDirectory) {
        fix(child, true);
        walk(child);
      } else if (e.isFile) fix(child, false);
    }
  };
  fix(dir, true);
  walk(dir);
  return repaired;
}

/** Who holds `dir`, from its lock file (null when nobody wrote one). */
export function readHolder(dir: string): HolderInfo | null {
  try {
    const text = Deno.readTextFileSync(join(dir, LOCK_FILE)).trim();
    return text ? JSON.parse(text) as HolderInfo : null;
  } catch {
    return null;
  }
}

/** True when some process (this one included, through another lock) holds `dir` now. */
export function isDataDirHeld(dir: string): boolean {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(join(dir, LOCK_FILE), { read: true, write: true });
  } catch {
    return false;
  }
  try {
    if (!file.tryLockSync(true)) return true;
    file.unlockSync();
    return false;
  } finally {
    file.close();
  }
}

/**
 * Takes the exclusive lock on `dir` (making it private first) or throws `DataDirBusyError`
 * without waiting and without touching anything else in it.
 */
export function lockDataDir(dir: string): DataDirLock {
  securePrivateDir(dir);
  const path = join(dir, LOCK_FILE);
  const file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
  if (!file.tryLockSync(true)) {
    file.close();
    throw new DataDirBusyError(dir, readHolder(dir));
  }
  const base: HolderInfo = {
    pid: Deno.pid,
    program: programName(),
    since: new Date().toISOString(),
  };
  const write = (info: HolderInfo) => {
    const bytes = new TextEncoder().encode(JSON.stringify(info) + "\n");
    file.truncateSync(0);
    file.seekSync(0, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
  };
  write(base);
  let released = false;
  return {
    dir,
    announce(info) {
      write({ ...base, ...info });
    },
    release() {
      if (released) return;
      released = true;
      try {
        file.truncateSync(0);
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}

/** A random operator token (64 hex digits) for the server's loopback endpoints. */
export function operatorToken(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(32)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Compares a presented `Authorization: Bearer …` header with the token in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer ([0-9a-f]{64})$/.exec(header ?? "");
  if (!m || token.length !== 64) return false;
  return timingSafeEqual(new TextEncoder().encode(m[1]), new TextEncoder().encode(token));
}

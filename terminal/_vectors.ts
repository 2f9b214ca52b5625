/** The test vectors of PROTOCOL.md §6, read from the document (for the tests that check them). */
import { fileURLToPath as fromFileUrl } from "node:url";
import type { TerminalKind } from "../modules/merchant/mod.ts";
import type { Message } from "./messages.ts";

export interface Vector {
  /** The heading above it: "CardPaymentReply (wrong password)". */
  name: string;
  terminalId: number;
  sequence: number;
  timestamp: number;
  /** False for a frame with a zero MAC. */
  sealed: boolean;
  message: Message;
  bytes: Uint8Array;
}

export async function protocolText(): Promise<string> {
  return await Deno.readTextFile(fromFileUrl(new URL("./PROTOCOL.md", import.meta.url)));
}

/**
 * The vectors' keys as §6 states them ("terminal 10001 uses the 32 bytes `00 01 02 … 1f`"):
 * 32 bytes counting up from the first.
 */
export async function vectorKeys(): Promise<Map<number, Uint8Array>> {
  const out = new Map<number, Uint8Array>();
  for (
    const m of (await protocolText()).matchAll(
      /terminal (\d+)(?: uses)?\s+the 32 bytes `([0-9a-f]{2}) /g,
    )
  ) {
    const first = parseInt(m[2], 16);
    out.set(Number(m[1]), Uint8Array.from({ length: 32 }, (_, i) => first + i));
  }
  return out;
}

/** The kind of each vector terminal as §6 names it (`canteen_pos`, `shower`). */
export async function vectorKinds(): Promise<Map<number, TerminalKind>> {
  const out = new Map<number, TerminalKind>();
  for (const m of (await protocolText()).matchAll(/terminal \*\*(\d+)\*\*[^(]*\(`([a-z_]+)`/g)) {
    out.set(Number(m[1]), m[2] as TerminalKind);
  }
  return out;
}

/** Every vector of §6, in document order. */
export async function vectors(): Promise<Vector[]> {
  const text = await protocolText();
  const out: Vector[] = [];
  const re = /#### (.+)\n\n```vector\n(\{.*\})\n([0-9a-f \n]+)```/g;
  for (const m of text.matchAll(re)) {
    const meta = JSON.parse(m[2]);
    const hex = m[3].replace(/\s+/g, "");
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    out.push({ name: m[1], ...meta, bytes });
  }
  return out;
}

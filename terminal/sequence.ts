/**
 * The sequence-number rules of PROTOCOL.md §3, checked for every accepted frame before the
 * service sees it. A connection remembers the highest number it knows the terminal has used
 * (the highest recorded one at its first frame, then each answered request's), so the common
 * case, a new number above it, costs no query.
 */
import type { Db } from "../modules/platform/database.ts";
import { MessageCode, messageName } from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import { serializeBody } from "./serializer.ts";
import { highestRecordedSequence, recordedType, recordedWithBody } from "./repository.ts";

/** The money-moving requests: recorded under their sequence number with their reply. */
const RECORDED: ReadonlySet<number> = new Set([
  MessageCode.CardPayment,
  MessageCode.QrPayment,
  MessageCode.ShowerStart,
  MessageCode.ShowerEnd,
  MessageCode.Reversal,
  MessageCode.OfflineUpload,
  MessageCode.OfflineUploadItemized,
  MessageCode.OfflineUploadMixed,
]);

/** Whether requests of `code` are recorded (money-moving, §3). */
export function isRecorded(code: number): boolean {
  return RECORDED.has(code);
}

/** What one connection knows of its terminal's sequence numbers. */
export interface SequenceState {
  /** The highest number known used: null until the connection's first accepted frame. */
  highest: number | null;
  /** Numbers answered ServerBusy: open for their retry whatever came after (§3 rule 5). */
  readonly open: Set<number>;
}

/** A connection keeps at most this many ServerBusy numbers open (the oldest go first). */
const MAX_OPEN = 64;

/**
 * Why `frame`'s sequence number is refused (`SequenceReused`), or null when the frame may go on:
 * 0 is never a request's; a recorded number belongs to its request (its retry goes on, anything
 * else under it is refused, read-only requests included); a money-moving request under a lower,
 * unrecorded number is refused unless a Reversal gave that number up (its late original is then
 * answered `Reversed`). A read-only request under an unrecorded number goes on: it is not
 * recorded, and its retry keeps its number.
 */
export async function sequenceRefusal(
  db: Db,
  state: SequenceState,
  terminalId: number,
  frame: RawFrame,
): Promise<string | null> {
  if (frame.sequence === 0) return "sequence 0 is reserved for pushes";
  state.highest ??= await highestRecordedSequence(db, terminalId);
  if (frame.sequence > state.highest || state.open.has(frame.sequence)) return null;
  const type = await recordedType(db, terminalId, frame.sequence);
  const money = isRecorded(frame.type);
  if (type !== null) {
    return money
      ? null
      : `${messageName(frame.type)} under sequence ${frame.sequence} of a recorded ${
        messageName(type)
      }`;
  }
  if (!money) return null;
  const givenUp = serializeBody({ code: MessageCode.Reversal, originalSequence: frame.sequence });
  if (await recordedWithBody(db, terminalId, MessageCode.Reversal, givenUp)) return null;
  return `${
    messageName(frame.type)
  } under unused sequence ${frame.sequence}, below ${state.highest}`;
}

/**
 * Notes that `sequence` was answered: the connection's highest number moves on, and a number
 * answered ServerBusy (`busy`) stays open for its retry.
 */
export function sequenceAnswered(state: SequenceState, sequence: number, busy: boolean): void {
  if (state.highest !== null && sequence > state.highest) state.highest = sequence;
  if (!busy) {
    state.open.delete(sequence);
    return;
  }
  state.open.add(sequence);
  if (state.open.size > MAX_OPEN) state.open.delete(state.open.values().next().value!);
}

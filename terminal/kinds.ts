/** Which messages each kind of reader may send (PROTOCOL.md §4, "kinds allowed"). */
import type { TerminalKind } from "../modules/merchant/mod.ts";
import { MessageCode } from "./messages.ts";

const ALL: TerminalKind[] = ["canteen_pos", "supermarket_pos", "qr_scanner", "shower"];
const POS: TerminalKind[] = ["canteen_pos", "supermarket_pos"];
const ALLOWED: Record<number, TerminalKind[]> = {
  [MessageCode.SignOn]: ALL,
  [MessageCode.Heartbeat]: ALL,
  [MessageCode.BlocklistSync]: ALL,
  [MessageCode.Reversal]: ALL,
  [MessageCode.CardPayment]: POS,
  [MessageCode.OfflineUpload]: POS,
  [MessageCode.OfflineUploadItemized]: POS,
  [MessageCode.OfflineUploadMixed]: POS,
  [MessageCode.QrPayment]: [...POS, "qr_scanner"],
  [MessageCode.BalanceInquiry]: [...POS, "shower"],
  [MessageCode.ShowerStart]: ["shower"],
  [MessageCode.ShowerEnd]: ["shower"],
};

/** Whether a terminal of `kind` may send request `code`. */
export function allowedFor(kind: TerminalKind, code: number): boolean {
  return ALLOWED[code]?.includes(kind) ?? false;
}

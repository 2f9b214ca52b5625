/**
 * Message codes, status codes and message shapes of the reader protocol (terminal/PROTOCOL.md).
 * A reply's code is its request's code with the high bit set.
 */

/** Frame constants: every frame starts with the magic "YX" and the protocol version. */
export const MAGIC_0 = 0x59; // 'Y'
export const MAGIC_1 = 0x58; // 'X'
export const PROTOCOL_VERSION = 0x01;
/** magic(2) version(1) type(1) terminal(4) sequence(4) timestamp(4) body length(2). */
export const HEADER_SIZE = 18;
/** First 16 bytes of HMAC-SHA256 over header and body. */
export const MAC_SIZE = 16;
export const MAX_BODY_SIZE = 4096;
export const MAX_FRAME_SIZE = HEADER_SIZE + MAX_BODY_SIZE + MAC_SIZE;
/** Longest string field (chip numbers, payment codes, names), in UTF-8 bytes. */
export const MAX_STRING_BYTES = 64;
/** Most records in one offline upload frame. */
export const MAX_OFFLINE_BATCH = 64;
/** Most chip numbers (added + removed) in one blocklist delta. */
export const MAX_BLOCKLIST_ENTRIES = 60;

/** A chip number (芯片卡号) on the wire: 4–20 characters `0-9A-Z`, nothing else (PROTOCOL.md §2). */
export function isChipNumber(s: string): boolean {
  return /^[0-9A-Z]{4,20}$/.test(s);
}

export const MessageCode = {
  /** Terminal → server: proves the key, asks for parameters. */
  SignOn: 0x01,
  /** Terminal → server: alive; its blocklist version and offline record count. */
  Heartbeat: 0x02,
  /** Terminal → server: pay by physical card (chip number, amount, card password). */
  CardPayment: 0x10,
  /** Terminal → server: pay by a scanned payment code (付款码). */
  QrPayment: 0x11,
  /** Terminal → server: balance of a card by chip number. */
  BalanceInquiry: 0x12,
  /** Shower controller → server: card swiped, put a hold on the wallet. */
  ShowerStart: 0x20,
  /** Shower controller → server: water stopped, charge the usage, release the rest. */
  ShowerEnd: 0x21,
  /** Terminal → server: cancel an earlier transaction of this terminal by its sequence number. */
  Reversal: 0x30,
  /** Terminal → server: blocklist changes since a version. */
  BlocklistSync: 0x40,
  /** Terminal → server: payments accepted while offline (reply: counts only). */
  OfflineUpload: 0x50,
  /** Terminal → server (1.1): the same upload; the reply says what each record charged. */
  OfflineUploadItemized: 0x51,
  /** Terminal → server (1.2): as 0x51, each record paid by a card or by a 离线付款码. */
  OfflineUploadMixed: 0x52,
  /** Server → terminal: a frame was refused before it reached any service. */
  Error: 0x7f,
  SignOnReply: 0x81,
  HeartbeatReply: 0x82,
  CardPaymentReply: 0x90,
  QrPaymentReply: 0x91,
  BalanceInquiryReply: 0x92,
  ShowerStartReply: 0xa0,
  ShowerEndReply: 0xa1,
  ReversalReply: 0xb0,
  BlocklistSyncReply: 0xc0,
  /** Server → terminal, unsolicited (sequence 0): blocklist changes as they happen. */
  BlocklistPush: 0xc1,
  OfflineUploadReply: 0xd0,
  OfflineUploadItemizedReply: 0xd1,
  OfflineUploadMixedReply: 0xd2,
} as const;

export type MessageCode = typeof MessageCode[keyof typeof MessageCode];

const CODE_NAMES = new Map<number, string>(Object.entries(MessageCode).map(([k, v]) => [v, k]));

/** "CardPayment" for 0x10; undefined for a code the protocol does not define. */
export function messageName(code: number): string | undefined {
  return CODE_NAMES.get(code);
}

/** "0x4e" */
export function hexCode(code: number): string {
  return `0x${code.toString(16).padStart(2, "0")}`;
}

/** Reply status codes (uint16). 0 is success; every refusal has its own code. */
export const Status = {
  Ok: 0x0000,
  // Frame refused (Error message 0x7f)
  BadMac: 0x0101,
  UnknownTerminal: 0x0102,
  TerminalDisabled: 0x0103,
  StaleTimestamp: 0x0104,
  UnknownType: 0x0105,
  MalformedBody: 0x0106,
  SequenceReused: 0x0107,
  WrongTerminal: 0x0108,
  NotAllowedForKind: 0x0109,
  ServerBusy: 0x010a,
  // Card payments, balance, shower start
  UnknownChip: 0x0201,
  ChipLost: 0x0202,
  ChipCancelled: 0x0203,
  CardLossReported: 0x0204,
  InsufficientBalance: 0x0205,
  OverPaymentLimit: 0x0206,
  OverDailyLimit: 0x0207,
  PasswordRequired: 0x0208,
  WrongPassword: 0x0209,
  PasswordLocked: 0x020a,
  InvalidAmount: 0x020b,
  CardCancelled: 0x020c,
  Reversed: 0x020d,
  /** Balance inquiries of one terminal above their rate (PROTOCOL.md §4.5). */
  RateLimited: 0x020e,
  /** 1.3: a meal period's cap per card (餐次限次/限额) would be passed; nothing charged. */
  OverMealPeriodLimit: 0x020f,
  // Payment codes
  CodeInvalid: 0x0301,
  CodeExpired: 0x0302,
  CodeUsed: 0x0303,
  /** An offline code (87…) from a phone whose clock is minutes off: go online once (§4.4). */
  CodeClockSkew: 0x0304,
  // Shower end
  HoldNotFound: 0x0401,
  // Reversal
  NotReversible: 0x0501,
  // Offline upload; per-record results of OfflineUploadItemizedReply (not charged, see §4.11)
  OfflineBatchInvalid: 0x0601,
  OfflineOverPaymentLimit: 0x0602,
  OfflineOverTotalLimit: 0x0603,
  OfflineOverRecordLimit: 0x0604,
  OfflinePasswordRequired: 0x0605,
  OfflineTimeAhead: 0x0606,
  OfflineTooOld: 0x0607,
  /** After a gap in the offline sequence: not acknowledged, send it again. */
  OfflineNotAcknowledged: 0x0608,
} as const;

export type Status = typeof Status[keyof typeof Status];

const STATUS_NAMES = new Map<number, string>(Object.entries(Status).map(([k, v]) => [v, k]));

/** "InsufficientBalance" for 0x0205. */
export function statusName(code: number): string {
  return STATUS_NAMES.get(code) ?? `0x${code.toString(16).padStart(4, "0")}`;
}

/** The fixed part of every frame. */
export interface FrameHeader {
  type: number;
  terminalId: number;
  sequence: number;
  /** Unix time in seconds. */
  timestamp: number;
}

/** Blocklist changes from one version to another. */
export interface BlocklistDelta {
  /** The version the terminal has after applying these changes. */
  version: number;
  /** False when more changes follow: sync again from `version`. */
  complete: boolean;
  added: string[];
  removed: string[];
}

export interface OfflineRecord {
  /** The terminal's own counter for offline records, from 1, no gaps. */
  offlineSequence: number;
  /** Unix seconds when the reader accepted the payment. */
  occurredAt: number;
  chip: string;
  amount: number;
  /**
   * OfflineUploadMixed (1.2) only: the payment code the reader scanned instead of a card (the
   * record's `chip` is then empty); "" for a card's record.
   */
  paymentCode?: string;
}

/** What the server did with one record of an itemized offline upload. */
export interface OfflineResult {
  offlineSequence: number;
  /** Ok: charged in full; any other status: not charged (and why). */
  result: number;
  /** Fen charged: the record's amount, or 0. */
  charged: number;
}

export type Message =
  | { code: 0x01; firmware: string }
  | { code: 0x02; blocklistVersion: number; offlineCount: number }
  | { code: 0x10; chip: string; amount: number; password: string }
  | { code: 0x11; paymentCode: string; amount: number }
  | { code: 0x12; chip: string }
  | { code: 0x20; chip: string }
  | { code: 0x21; holdId: number; units: number }
  | { code: 0x30; originalSequence: number }
  | { code: 0x40; fromVersion: number }
  | { code: 0x50; records: OfflineRecord[] }
  | { code: 0x51; records: OfflineRecord[] }
  | { code: 0x52; records: OfflineRecord[] }
  | { code: 0x7f; status: number; serverTime: number }
  | {
    code: 0x81;
    status: number;
    serverTime: number;
    merchantName: string;
    blocklistVersion: number;
    offlinePaymentLimit: number;
    offlineTotalLimit: number;
    offlineMaxRecords: number;
    passwordThreshold: number;
    showerUnitPrice: number;
    showerUnit: string;
    showerHoldAmount: number;
    heartbeatSeconds: number;
  }
  | {
    code: 0x82;
    status: number;
    serverTime: number;
    uploadOffline: boolean;
    blocklist: BlocklistDelta;
  }
  | {
    code: 0x90;
    status: number;
    amount: number;
    balance: number;
    triesLeft: number;
    retryAfter: number;
  }
  | { code: 0x91; status: number; amount: number; balance: number }
  | { code: 0x92; status: number; balance: number; available: number; name: string }
  | { code: 0xa0; status: number; holdId: number; authorised: number; balance: number }
  | { code: 0xa1; status: number; charged: number; released: number; balance: number }
  | { code: 0xb0; status: number; originalSequence: number; amount: number; balance: number }
  | { code: 0xc0; status: number; blocklist: BlocklistDelta }
  | { code: 0xc1; fromVersion: number; blocklist: BlocklistDelta }
  | { code: 0xd0; status: number; ackedSequence: number; applied: number; duplicates: number }
  | {
    code: 0xd1;
    status: number;
    ackedSequence: number;
    duplicates: number;
    results: OfflineResult[];
  }
  | {
    code: 0xd2;
    status: number;
    ackedSequence: number;
    duplicates: number;
    results: OfflineResult[];
  };

/** The message with code `C`. */
export type MessageOf<C extends Message["code"]> = Extract<Message, { code: C }>;

/** A decoded frame: header, message, and the raw bytes it came from. */
export interface Frame {
  header: FrameHeader;
  message: Message;
}

/** A frame that could not be handled; `close` says the stream cannot be trusted any more. */
export class FrameError extends Error {
  constructor(message: string, readonly status: number, readonly close: boolean) {
    super(message);
    this.name = "FrameError";
  }
}

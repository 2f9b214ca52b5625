/** Passwords, sessions, CSRF, throttling and keyed hashes shared by every module. */
export {
  hashCardPassword,
  hashPassword,
  loginPasswordProblem,
  temporaryPassword,
  verifyCardPassword,
  verifyPassword,
} from "./passwords.ts";
export {
  keyedHash,
  randomDigits,
  randomToken,
  sha256Hex,
  timingSafeEqual,
  toBase64Url,
  toHex,
} from "../platform/crypto.ts";
export {
  assertNotLocked,
  CARD_PASSWORD_RULES,
  clearThrottle,
  forgetSignIn,
  guardedGuess,
  type GuessBudget,
  type GuessGuard,
  type GuessOutcome,
  lockedFor,
  proveSignIn,
  recordEvent,
  SIGN_IN_RULE,
  signInGuard,
  signInProof,
  signInWaitMessage,
  takeFromBudget,
  type ThrottleRule,
} from "./throttle.ts";
export {
  destroySessionsOf,
  purgeExpiredSessions,
  STAFF_SESSION,
  STUDENT_SESSION,
} from "./sessions.ts";
export {
  clientIp,
  requireStudent,
  safeNext,
  type SecurityDeps,
  sendToSignIn,
  sessionMiddleware,
  signIn,
  signInDevice,
  signOut,
} from "./middleware.ts";
/** A hot student page checks the session in its own statement (one round trip per view). */
export { checkSessionInPageQuery, studentPageQuery } from "./page_session.ts";

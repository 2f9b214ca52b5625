/**
 * 毕业离校 (graduation close-out): batches that close a graduating class's cards on a date, each
 * card once, resumable after a crash, with the balance refunded by the batch's rule.
 */
export {
  cancelBatch,
  confirmBatch,
  createBatch,
  notifyBatch,
  planOf,
  retryFailed,
} from "./service.ts";
/** The worker that closes the queued cards (main.ts starts it), and one round of it (tests). */
export { runCloseoutRound, startCloseoutWorker } from "./worker.ts";
/** The staff pages, mounted at /admin/closeout. */
export { closeoutRoutes } from "./routes.ts";

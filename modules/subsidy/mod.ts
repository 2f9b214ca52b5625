/**
 * 补助发放 (subsidy batches) for 财务处: one member prepares a batch and its preview, another
 * approves it and each recipient's 补助 lot is credited once (resumable), or it is withdrawn;
 * after approval a card's grant is reversed by a new transfer. Expiry is the wallet's worker.
 */
export {
  type Actor,
  type Batch,
  batchLots,
  batchRows,
  batchTotals,
  createBatch,
  getBatch,
  grantReference,
  listBatches,
  type NewBatch,
  reverseRecipient,
  withdrawBatch,
} from "./service.ts";
/** The approval and its crediting (chunked, resumable), and the worker that resumes a dead one. */
export { type Approval, approveBatch, CHUNK, creditBatch, startSubsidyWorker } from "./approve.ts";
/** The row checks of a list (amounts in yuan) and their bounds. */
export { amountOf, MAX_GRANT, MAX_ROWS, SubsidyError } from "./recipients.ts";
/** The demo's batch awaiting approval (demo/seed.ts). */
export { seedDemoSubsidy } from "./demo.ts";
/** The staff pages, mounted at /admin/subsidy. */
export { subsidyRoutes } from "./routes.ts";

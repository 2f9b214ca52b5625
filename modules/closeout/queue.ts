import { jobQueue } from "../platform/jobs.ts";
import "./tables.ts";

/** 毕业离校's cards waiting to be closed (platform/jobs.ts). */
export const CLOSEOUT_QUEUE = jobQueue<"pending" | "queued" | "done" | "failed">({
  name: "closeout",
  table: "closeout_cards",
  key: "id",
  active: ["queued"],
});

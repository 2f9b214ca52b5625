/** Demo data for the embedded setup: the school, a staff admin, cardholders, terminals. */
export { seedDemoData } from "./seed.ts";

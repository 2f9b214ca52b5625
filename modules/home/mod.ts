/** 智校园 home (`/`) and 我的 (`/me`): the pages the WeChat menu opens. */
export { homeRoutes } from "./routes.ts";

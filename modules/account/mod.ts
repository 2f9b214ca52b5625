/** 一信通账号: login accounts (phone + login password + school), schools, email binding. */
export {
  type Account,
  ensureSchool,
  findAccount,
  findAccountByPhone,
  findSchool,
  listSchools,
  type School,
} from "./repository.ts";

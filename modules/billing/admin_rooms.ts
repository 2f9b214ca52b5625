/** 宿舍房间: buildings, their rooms, and the CSV import (card office and sysadmin). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps, idOf } from "./_admin.ts";
import { addBuilding, addRoom, editBuilding, editRoom, importRooms } from "./admin_actions.ts";
import { BILLING_ROLES } from "./roles.ts";
import {
  buildingForm,
  buildingNameForm,
  newRoomForm,
  roomForm,
  roomsImportForm,
} from "./schemas.ts";
import {
  findBuilding,
  findRoom,
  type ImportResult,
  listBuildings,
  listRoomsWithResidents,
} from "./rooms.ts";

type Input = Record<string, string>;

/** The buildings and rooms pages, mounted under /admin/billing. */
export function roomsAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const rooms = requireRole(...BILLING_ROLES.rooms);
  const toBuildings = "/admin/billing/buildings";

  const showBuildings = async (
    c: Context<AppEnv>,
    errors: FieldErrors = {},
    input: Input = {},
    status = 200,
    imported?: ImportResult,
  ) => {
    const list = await listBuildings(db);
    const data = { list, errors, input, imported };
    return render(c, "billing/admin_buildings", data, { ...ADMIN, status, title: "宿舍房间" });
  };

  const showBuilding = async (
    c: Context<AppEnv>,
    id: number,
    errors: FieldErrors = {},
    input: Input = {},
    status = 200,
  ) => {
    const building = await findBuilding(db, id);
    if (!building) throw new NotFoundError(`building ${id}`);
    const data = { building, rooms: await listRoomsWithResidents(db, id), errors, input };
    return render(c, "billing/admin_building", data, { ...ADMIN, status, title: building.name });
  };

  const roomOf = async (c: Context<AppEnv>) => {
    const room = await findRoom(db, idOf(c));
    if (!room) throw new NotFoundError(`room ${idOf(c)}`);
    return room;
  };

  app.get("/buildings", rooms, (c) => showBuildings(c));

  app.post(
    "/buildings",
    rooms,
    zValidator("form", buildingForm, formErrorsHook((c, e, i) => showBuildings(c, e, i, 422))),
    (c) => {
      const f = c.req.valid("form");
      return runForm(
        () => addBuilding(db, actorOf(c), f),
        (e) => showBuildings(c, e, f, 422),
        () => c.redirect(toBuildings, 303),
      );
    },
  );

  app.post(
    "/buildings/import",
    rooms,
    zValidator("form", roomsImportForm, formErrorsHook((c, e) => showBuildings(c, e, {}, 422))),
    (c) =>
      runForm(
        () => importRooms(db, actorOf(c), c.req.valid("form")),
        (e) => showBuildings(c, { csv: e._form ?? e.csv ?? "导入失败" }, {}, 422),
        (result) => showBuildings(c, {}, {}, 200, result),
      ),
  );

  app.get("/buildings/:id", rooms, (c) => showBuilding(c, idOf(c)));

  app.post(
    "/buildings/:id",
    rooms,
    zValidator(
      "form",
      buildingNameForm,
      formErrorsHook((c, e, i) => showBuilding(c, idOf(c), e, i, 422)),
    ),
    (c) => {
      const [id, f] = [idOf(c), c.req.valid("form")];
      return runForm(
        () => editBuilding(db, actorOf(c), id, f.name),
        (e) => showBuilding(c, id, e, f, 422),
        () => c.redirect(`${toBuildings}/${id}`, 303),
      );
    },
  );

  app.post(
    "/buildings/:id/rooms",
    rooms,
    zValidator(
      "form",
      newRoomForm,
      formErrorsHook((c, e, i) => showBuilding(c, idOf(c), e, i, 422)),
    ),
    (c) => {
      const [id, f] = [idOf(c), c.req.valid("form")];
      return runForm(
        () => addRoom(db, actorOf(c), id, f),
        (e) => showBuilding(c, id, e, { number: f.number, capacity: f.capacity }, 422),
        () => c.redirect(`${toBuildings}/${id}`, 303),
      );
    },
  );

  app.post(
    "/rooms/:id",
    rooms,
    zValidator(
      "form",
      roomForm,
      formErrorsHook(async (c, e) => showBuilding(c, (await roomOf(c)).buildingId, e, {}, 422)),
    ),
    async (c) => {
      const room = await roomOf(c);
      return runForm(
        () => editRoom(db, actorOf(c), room, c.req.valid("form")),
        (e) => showBuilding(c, room.buildingId, e, {}, 422),
        () => c.redirect(`${toBuildings}/${room.buildingId}`, 303),
      );
    },
  );

  return app;
}

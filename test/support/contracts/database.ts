import assert from "node:assert/strict";
import { describe, type TestContext, test } from "node:test";
import { type Kysely, type Migration, sql } from "kysely";
import { isDatabaseUnavailable, isUniqueViolation, migrateToLatest } from "../../../src/platform/database.ts";

export interface OpenedDatabase {
  // biome-ignore lint/suspicious/noExplicitAny: the contract builds its own tables
  db: Kysely<any>;
  /** Closes the database and removes what `open` created (file, database). */
  cleanup(): Promise<void>;
}

/**
 * What the services rely on from a database, run against every dialect `openDatabase` supports
 * (SQLite and MySQL/MariaDB): portable migrations, types, errors, counts and ordering. Each test
 * gets a fresh, empty database from `open`.
 */
export function databaseContract(name: string, open: () => Promise<OpenedDatabase>): void {
  async function fresh(t: TestContext): Promise<OpenedDatabase["db"]> {
    const opened = await open();
    t.after(() => opened.cleanup());
    return opened.db;
  }

  // Two "services" with their own tables and bookkeeping, in one database.
  const itemsV1: Record<string, Migration> = {
    "0001_items": {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable("items")
          .addColumn("id", "varchar(36)", (c) => c.primaryKey())
          .addColumn("name", "varchar(254)", (c) => c.notNull().unique())
          .addColumn("flag", "integer", (c) => c.notNull().defaultTo(0))
          .addColumn("size", "bigint", (c) => c.notNull())
          .addColumn("ratio", "double precision", (c) => c.notNull().defaultTo(0))
          .addColumn("maybe", "double precision")
          .addColumn("note", "varchar(1000)")
          .addColumn("created_at", "varchar(32)", (c) => c.notNull())
          .execute();
        await db.schema.createIndex("items_created_at").on("items").column("created_at").execute();
      },
    },
  };
  const itemsV2: Record<string, Migration> = {
    ...itemsV1,
    "0002_items_owner": {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable("items").addColumn("owner", "varchar(64)").execute();
      },
    },
  };
  const others: Record<string, Migration> = {
    "0001_others": {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable("others")
          .addColumn("id", "varchar(36)", (c) => c.primaryKey())
          .execute();
      },
    },
  };
  const migrated = async (t: TestContext) => {
    const db = await fresh(t);
    await migrateToLatest(db, itemsV1, { table: "items_migrations" });
    return db;
  };
  const item = (id: string, extra: Record<string, unknown> = {}) => ({
    id,
    name: `name-${id}`,
    size: 1,
    created_at: "2026-01-01T00:00:00.000Z",
    ...extra,
  });

  describe(`database contract: ${name}`, () => {
    test("migrations run once, each service in its own bookkeeping table, and later ones are added", async (t) => {
      const db = await fresh(t);
      await migrateToLatest(db, itemsV1, { table: "items_migrations" });
      await migrateToLatest(db, others, { table: "others_migrations" });
      await migrateToLatest(db, itemsV1, { table: "items_migrations" });
      await migrateToLatest(db, others, { table: "others_migrations" });
      await migrateToLatest(db, itemsV2, { table: "items_migrations" });
      await migrateToLatest(db, itemsV2, { table: "items_migrations" });

      const names = async (table: string) =>
        (await db.selectFrom(table).select("name").orderBy("name").execute()).map((r) => r.name);
      assert.deepEqual(await names("items_migrations"), ["0001_items", "0002_items_owner"]);
      assert.deepEqual(await names("others_migrations"), ["0001_others"]);
      await db
        .insertInto("items")
        .values(item("a", { owner: "o" }))
        .execute();
      await db.insertInto("others").values({ id: "x" }).execute();
      assert.equal((await db.selectFrom("items").select("owner").executeTakeFirstOrThrow()).owner, "o");
    });

    test("a database migrated before per-service tables keeps its history (kysely_migration is adopted)", async (t) => {
      const db = await fresh(t);
      // What the first releases did: Kysely's default bookkeeping table.
      const { Migrator } = await import("kysely");
      const provider = { getMigrations: async () => itemsV1 };
      const legacy = await new Migrator({ db, provider }).migrateToLatest();
      assert.equal(legacy.error, undefined);

      await migrateToLatest(db, itemsV2, { table: "items_migrations" });
      const rows = await db.selectFrom("items_migrations").select("name").orderBy("name").execute();
      assert.deepEqual(
        rows.map((r) => r.name),
        ["0001_items", "0002_items_owner"],
      );
    });

    test("the portable types read back as the same JS values", async (t) => {
      const db = await migrated(t);
      const big = 2 ** 40 + 3; // a 1 TiB upload is still an exact number
      await db
        .insertInto("items")
        .values({
          id: "8d1d1b6e-6b2a-4d3c-9a53-0f8f3e6b9c01",
          name: "Zoë 🎧 «mp3»",
          flag: 1,
          size: big,
          ratio: 0.125,
          maybe: 12.345678901,
          note: "x".repeat(1000),
          created_at: "2026-11-26T09:15:00.123Z",
        })
        .execute();
      await db.insertInto("items").values(item("b")).execute();
      const [a, b] = await db.selectFrom("items").selectAll().orderBy("id").execute();
      assert.ok(a && b);
      assert.deepEqual(
        { ...a, note: a.note.length },
        {
          id: "8d1d1b6e-6b2a-4d3c-9a53-0f8f3e6b9c01",
          name: "Zoë 🎧 «mp3»",
          flag: 1,
          size: big,
          ratio: 0.125,
          maybe: 12.345678901,
          note: 1000,
          created_at: "2026-11-26T09:15:00.123Z",
        },
      );
      assert.deepEqual(
        { flag: b.flag, ratio: b.ratio, maybe: b.maybe, note: b.note },
        { flag: 0, ratio: 0, maybe: null, note: null },
      );
      for (const column of ["flag", "size", "ratio", "maybe"]) {
        assert.equal(typeof a[column], "number", `${column} is a number`);
      }
      // Booleans given as parameters are stored as 0/1.
      await db
        .updateTable("items")
        .set({ flag: true as unknown as number })
        .where("id", "=", "b")
        .execute();
      assert.equal(
        (await db.selectFrom("items").select("flag").where("id", "=", "b").executeTakeFirst())?.flag,
        1,
      );
    });

    test("text comparisons are exact: case and accents matter, as in code", async (t) => {
      const db = await migrated(t);
      await db
        .insertInto("items")
        .values(item("1", { name: "josé@example.com" }))
        .execute();
      await db
        .insertInto("items")
        .values(item("2", { name: "jose@example.com" }))
        .execute();
      await db
        .insertInto("items")
        .values(item("3", { name: "Jose@example.com" }))
        .execute();
      const found = await db
        .selectFrom("items")
        .select("id")
        .where("name", "=", "jose@example.com")
        .execute();
      assert.deepEqual(
        found.map((r) => r.id),
        ["2"],
      );
    });

    test("a unique violation raises an error isUniqueViolation recognises; other errors are not", async (t) => {
      const db = await migrated(t);
      await db
        .insertInto("items")
        .values(item("1", { name: "same" }))
        .execute();
      const duplicateName = await db
        .insertInto("items")
        .values(item("2", { name: "same" }))
        .execute()
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      assert.ok(duplicateName, "a duplicate in a unique column is refused");
      assert.equal(isUniqueViolation(duplicateName), true);
      assert.equal(isDatabaseUnavailable(duplicateName), false);

      const duplicateId = await db
        .insertInto("items")
        .values(item("1", { name: "other" }))
        .execute()
        .catch((e) => e);
      assert.equal(isUniqueViolation(duplicateId), true);

      const syntax = await sql`select nonsense from nowhere_at_all`.execute(db).catch((e: unknown) => e);
      assert.ok(syntax instanceof Error);
      assert.equal(isUniqueViolation(syntax), false);
      assert.equal(isDatabaseUnavailable(syntax), false);
      assert.equal(
        await db
          .selectFrom("items")
          .select("id")
          .execute()
          .then((r) => r.length),
        1,
      );
    });

    test("update and delete report the rows they matched, as bigints", async (t) => {
      const db = await migrated(t);
      for (const id of ["1", "2", "3"])
        await db
          .insertInto("items")
          .values(item(id, { flag: 0 }))
          .execute();

      const two = await db
        .updateTable("items")
        .set({ flag: 1 })
        .where("id", "in", ["1", "2"])
        .executeTakeFirst();
      assert.equal(two.numUpdatedRows, 2n);
      // Setting the values a row already has still counts it (idempotent handlers rely on it).
      const same = await db.updateTable("items").set({ flag: 1 }).where("id", "=", "1").executeTakeFirst();
      assert.equal(same.numUpdatedRows, 1n);
      const none = await db.updateTable("items").set({ flag: 1 }).where("id", "=", "nope").executeTakeFirst();
      assert.equal(none.numUpdatedRows, 0n);

      const deleted = await db.deleteFrom("items").where("flag", "=", 1).executeTakeFirst();
      assert.equal(deleted.numDeletedRows, 2n);
      const again = await db.deleteFrom("items").where("flag", "=", 1).executeTakeFirst();
      assert.equal(again.numDeletedRows, 0n);
    });

    test("ISO-8601 strings order as time, with the id breaking ties; limit and offset page", async (t) => {
      const db = await migrated(t);
      const times = [
        ["a", "2026-11-26T09:00:00.000Z"],
        ["b", "2026-11-26T09:00:00.001Z"],
        ["c", "2026-11-26T10:00:00.000Z"],
        ["d", "2026-11-26T10:00:00.000Z"],
        ["e", "2025-12-31T23:59:59.999Z"],
        ["f", "2026-01-01T00:00:00.000Z"],
      ];
      for (const [id, at] of times.reverse()) {
        await db
          .insertInto("items")
          .values(item(id ?? "", { created_at: at }))
          .execute();
      }
      const page = (offset: number) =>
        db
          .selectFrom("items")
          .select("id")
          .orderBy("created_at", "desc")
          .orderBy("id", "desc")
          .limit(4)
          .offset(offset)
          .execute();
      const ids = [...(await page(0)), ...(await page(4))].map((r) => r.id);
      assert.deepEqual(ids, ["d", "c", "b", "a", "f", "e"]);
      const later = await db
        .selectFrom("items")
        .select("id")
        .where("created_at", ">", "2026-11-26T09:00:00.000Z")
        .orderBy("created_at")
        .orderBy("id")
        .execute();
      assert.deepEqual(
        later.map((r) => r.id),
        ["b", "c", "d"],
      );
    });

    test("count(*) converts to the number of rows", async (t) => {
      const db = await migrated(t);
      const count = async () =>
        Number(
          (
            await db
              .selectFrom("items")
              .select((eb) => eb.fn.countAll().as("n"))
              .executeTakeFirstOrThrow()
          ).n,
        );
      assert.equal(await count(), 0);
      for (const id of ["1", "2", "3"]) await db.insertInto("items").values(item(id)).execute();
      assert.equal(await count(), 3);
      // `select 1` is the readiness probe of every service.
      await sql`select 1`.execute(db);
    });

    test("concurrent queries on one handle all complete", async (t) => {
      const db = await migrated(t);
      await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          db
            .insertInto("items")
            .values(item(String(i)))
            .execute(),
        ),
      );
      const rows = await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          db.selectFrom("items").select("id").where("id", "=", String(i)).executeTakeFirst(),
        ),
      );
      assert.equal(rows.filter(Boolean).length, 25);
    });
  });
}

import assert from "node:assert/strict";
import { describe, type TestContext, test } from "node:test";
import type { Kysely } from "kysely";
import { testDatabaseBackends } from "../../test/support/mariadb.ts";
import { migrateToLatest } from "../platform/database.ts";
import { AUTH_MIGRATION_TABLE, type AuthDatabase, authMigrations } from "./migrations.ts";
import { createUsersRepository, DuplicateEmailError, type UsersRepository } from "./users.ts";

for (const backend of testDatabaseBackends) {
  describe(`users repository on ${backend.name}`, () => {
    usersRepositoryTests(async (t: TestContext) => {
      const { db, cleanup } = await backend.open<AuthDatabase>();
      t.after(cleanup);
      await migrateToLatest(db, authMigrations, { table: AUTH_MIGRATION_TABLE });
      return { db, users: createUsersRepository(db) };
    });
  });
}

function usersRepositoryTests(
  repository: (t: TestContext) => Promise<{ db: Kysely<AuthDatabase>; users: UsersRepository }>,
) {
  test("e-mails are trimmed and lowercased on create and lookup; duplicates are refused", async (t) => {
    const { users } = await repository(t);
    const created = await users.create({ email: "  Alice@Example.COM ", passwordHash: "h", admin: false });
    assert.equal(created.email, "alice@example.com");
    assert.equal(created.disabled, false);
    assert.equal(created.createdAt, created.updatedAt);
    assert.match(created.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    assert.equal((await users.findByEmail("ALICE@example.com  "))?.id, created.id);
    assert.deepEqual(await users.findById(created.id), created);
    assert.equal(await users.findById("00000000-0000-4000-8000-000000000000"), undefined);
    await assert.rejects(
      users.create({ email: "alice@EXAMPLE.com", passwordHash: "h2", admin: true }),
      DuplicateEmailError,
    );
    assert.equal(await users.count(), 1);
  });

  test("booleans are stored as 0/1 integers and times as ISO strings (portable schema)", async (t) => {
    const { db, users } = await repository(t);
    await users.create({ email: "root@example.com", passwordHash: "h", admin: true });
    const row = await db.selectFrom("users").selectAll().executeTakeFirstOrThrow();
    assert.equal(row.admin, 1);
    assert.equal(row.disabled, 0);
    assert.equal(typeof row.created_at, "string");
  });

  test("list pages newest first with a total", async (t) => {
    const { users } = await repository(t);
    for (const name of ["a", "b", "c", "d", "e"]) {
      await users.create({ email: `${name}@example.com`, passwordHash: "h", admin: false });
    }
    const first = await users.list({ limit: 2, offset: 0 });
    const second = await users.list({ limit: 2, offset: 2 });
    const last = await users.list({ limit: 2, offset: 4 });
    assert.equal(first.total, 5);
    assert.deepEqual(
      [...first.users, ...second.users, ...last.users].map((u) => u.email[0]),
      ["e", "d", "c", "b", "a"],
    );
  });

  test("update changes only what is given and bumps updatedAt", async (t) => {
    const { users } = await repository(t);
    const user = await users.create({ email: "bob@example.com", passwordHash: "old", admin: false });

    const disabled = await users.update(user.id, { disabled: true });
    assert.equal(disabled?.disabled, true);
    assert.equal(disabled?.admin, false);
    assert.equal(disabled?.passwordHash, "old");
    assert.ok((disabled?.updatedAt ?? "") > user.updatedAt);

    const changed = await users.update(user.id, { admin: true, passwordHash: "new", disabled: false });
    assert.deepEqual(
      { admin: changed?.admin, disabled: changed?.disabled, passwordHash: changed?.passwordHash },
      { admin: true, disabled: false, passwordHash: "new" },
    );
    assert.equal(await users.update("00000000-0000-4000-8000-000000000000", { admin: true }), undefined);
  });

  test("e-mails differing only in accents are different accounts", async (t) => {
    const { users } = await repository(t);
    await users.create({ email: "jose@example.com", passwordHash: "h", admin: false });
    const accented = await users.create({ email: "José@example.com", passwordHash: "h", admin: false });
    assert.equal(accented.email, "josé@example.com");
    assert.equal((await users.findByEmail("JOSÉ@example.com"))?.id, accented.id);
    assert.equal(await users.count(), 2);
  });

  test("migrating twice changes nothing", async (t) => {
    const { db, users } = await repository(t);
    await users.create({ email: "a@example.com", passwordHash: "h", admin: false });
    await migrateToLatest(db, authMigrations, { table: AUTH_MIGRATION_TABLE });
    assert.equal(await users.count(), 1);
  });
}

import { randomUUID } from "node:crypto";
import type { Kysely, Selectable } from "kysely";
import { isUniqueViolation } from "../platform/database.ts";
import type { AuthDatabase, UsersTable } from "./migrations.ts";

export interface User {
  id: string;
  email: string;
  passwordHash: string;
  admin: boolean;
  disabled: boolean;
  /** See `UsersTable.token_generation`. */
  tokenGeneration: number;
  createdAt: string;
  updatedAt: string;
}

export interface NewUser {
  email: string;
  passwordHash: string;
  admin: boolean;
}

/** A new password or disabling the account also revokes every token issued before (the generation moves on). */
export interface UserChanges {
  disabled?: boolean;
  passwordHash?: string;
  admin?: boolean;
}

export class DuplicateEmailError extends Error {
  override name = "DuplicateEmailError";
}

/** One spelling per mailbox, so `Alice@Example.com ` and `alice@example.com` are the same account. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export interface UsersRepository {
  /** Throws DuplicateEmailError when the e-mail is taken. */
  create(user: NewUser): Promise<User>;
  findByEmail(email: string): Promise<User | undefined>;
  findById(id: string): Promise<User | undefined>;
  /** Newest first. */
  list(page: { limit: number; offset: number }): Promise<{ users: User[]; total: number }>;
  count(): Promise<number>;
  /** The updated user, or undefined when there is no such user. */
  update(id: string, changes: UserChanges): Promise<User | undefined>;
}

export function createUsersRepository(db: Kysely<AuthDatabase>): UsersRepository {
  const repository: UsersRepository = {
    async create(user) {
      const at = monotonicNow();
      const row: UsersTable = {
        id: randomUUID(),
        email: normalizeEmail(user.email),
        password_hash: user.passwordHash,
        admin: user.admin ? 1 : 0,
        disabled: 0,
        token_generation: 0,
        created_at: at,
        updated_at: at,
      };
      try {
        await db.insertInto("users").values(row).execute();
      } catch (error) {
        // The id is a fresh UUID, so the unique index that refused the row is the e-mail's.
        if (isUniqueViolation(error)) {
          throw new DuplicateEmailError(`A user with the e-mail ${row.email} already exists.`, {
            cause: error,
          });
        }
        throw error;
      }
      return toUser(row);
    },
    async findByEmail(email) {
      const row = await db
        .selectFrom("users")
        .selectAll()
        .where("email", "=", normalizeEmail(email))
        .executeTakeFirst();
      return row && toUser(row);
    },
    async findById(id) {
      const row = await db.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
      return row && toUser(row);
    },
    async list({ limit, offset }) {
      const [rows, total] = await Promise.all([
        db
          .selectFrom("users")
          .selectAll()
          // id breaks ties so pages never overlap or skip a user.
          .orderBy("created_at", "desc")
          .orderBy("id", "desc")
          .limit(limit)
          .offset(offset)
          .execute(),
        repository.count(),
      ]);
      return { users: rows.map(toUser), total };
    },
    async count() {
      const { n } = await db
        .selectFrom("users")
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirstOrThrow();
      // COUNT(*) is a number on SQLite; MySQL's BIGINT may come as a string: convert either way.
      return Number(n);
    },
    async update(id, changes) {
      const values: Partial<UsersTable> = { updated_at: monotonicNow() };
      if (changes.disabled !== undefined) values.disabled = changes.disabled ? 1 : 0;
      if (changes.admin !== undefined) values.admin = changes.admin ? 1 : 0;
      if (changes.passwordHash !== undefined) values.password_hash = changes.passwordHash;
      const revokes = changes.passwordHash !== undefined || changes.disabled === true;
      const result = await db
        .updateTable("users")
        .set(values)
        .$if(revokes, (q) => q.set((eb) => ({ token_generation: eb("token_generation", "+", 1) })))
        .where("id", "=", id)
        .executeTakeFirst();
      // A bigint on both dialects; MySQL counts matched rows (mysql2's FOUND_ROWS), as SQLite does.
      if (Number(result.numUpdatedRows) === 0) return undefined;
      return repository.findById(id);
    },
  };
  return repository;
}

function toUser(row: Selectable<UsersTable>): User {
  return {
    id: row.id,
    email: row.email,
    passwordHash: row.password_hash,
    admin: Number(row.admin) === 1,
    disabled: Number(row.disabled) === 1,
    tokenGeneration: Number(row.token_generation),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

let lastTimestamp = 0;

/**
 * The current time as ISO-8601, strictly increasing within this process: users created in the
 * same millisecond still list in the order they were made.
 */
function monotonicNow(): string {
  lastTimestamp = Math.max(Date.now(), lastTimestamp + 1);
  return new Date(lastTimestamp).toISOString();
}

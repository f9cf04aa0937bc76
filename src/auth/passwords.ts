import { randomBytes } from "node:crypto";
import { hash, verify } from "@node-rs/argon2";
import { authError } from "./errors.ts";

/**
 * argon2id with the OWASP minimum parameters: 19 MiB memory, 2 passes, 1 lane. argon2id is the
 * library's default algorithm (its `Algorithm` is a const enum, which type stripping cannot read),
 * and the PHC string it returns starts with `$argon2id$`.
 */
export const passwordHashOptions = { memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

/**
 * argon2 runs on libuv's thread pool (4 threads), which file reads and writes share: a burst of
 * logins would make every download wait. At most `HASHING_CONCURRENCY` hashes run at once, at most
 * `HASHING_QUEUE` wait; beyond that a login is refused at once with 503 and Retry-After.
 */
export const HASHING_CONCURRENCY = 2;
export const HASHING_QUEUE = 32;

let running = 0;
const waiting: (() => void)[] = [];

async function withHashingSlot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= HASHING_CONCURRENCY) {
    if (waiting.length >= HASHING_QUEUE) {
      throw authError("busy", "Too many logins at once; try again in a second.", {
        "Retry-After": "1",
      });
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  } else {
    running++;
  }
  try {
    return await work();
  } finally {
    // Hand the slot straight to the next in line, or give it back.
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

export function hashPassword(password: string): Promise<string> {
  return withHashingSlot(() => hash(password, passwordHashOptions));
}

/** False (never a throw) for a wrong password or a hash that is not a valid argon2 string. */
export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  return withHashingSlot(async () => {
    try {
      return await verify(passwordHash, password);
    } catch {
      return false;
    }
  });
}

// A hash of a random password nobody knows, made once with the same parameters as real ones.
let dummyHash: Promise<string> | undefined;

function getDummyHash(): Promise<string> {
  dummyHash ??= hashPassword(randomBytes(32).toString("base64url"));
  return dummyHash;
}

/** Makes the dummy hash at start, so the first unknown-e-mail login is not slower than the rest. */
export async function prepareLoginTiming(): Promise<void> {
  await getDummyHash();
}

/**
 * Checks a login. An unknown e-mail (`passwordHash` undefined) still spends one full argon2
 * verification on a dummy hash, so the response time does not tell whether the account exists.
 */
export async function verifyLogin(passwordHash: string | undefined, password: string): Promise<boolean> {
  if (passwordHash !== undefined) return verifyPassword(passwordHash, password);
  await verifyPassword(await getDummyHash(), password);
  return false;
}

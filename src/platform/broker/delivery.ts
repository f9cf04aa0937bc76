import type { Logger } from "../logger.ts";
import { type ConsumeOptions, type DeadLetter, type Handler, PermanentError, retryDelay } from "./broker.ts";

/**
 * What both adapters (memory, RabbitMQ) do alike with a message: check the consume options,
 * serialise a body, and turn a delivery into what must happen to it. Services use broker.ts.
 */

/** `ConsumeOptions` checked, with the defaults filled in. */
export interface ConsumeSettings<T> {
  parse: (body: unknown) => T;
  concurrency: number;
  maxAttempts: number;
  retryDelayMs: number;
}

export function consumeSettings<T>(options: ConsumeOptions<T>): ConsumeSettings<T> {
  const { parse, concurrency, maxAttempts = 5, retryDelayMs = 5000 } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  }
  if (!Number.isFinite(retryDelayMs) || retryDelayMs < 0) {
    throw new RangeError(`retryDelayMs must be a non-negative number, got ${retryDelayMs}`);
  }
  return { parse, concurrency, maxAttempts, retryDelayMs };
}

/** The body as JSON text; a TypeError for what JSON cannot carry (a function, say). */
export function encodeBody(target: string, body: object): string {
  const json: string | undefined = JSON.stringify(body);
  if (json === undefined) throw new TypeError(`message for ${target} is not JSON-serialisable`);
  return json;
}

/** What a delivery calls for once its handler is done with it. */
export type Outcome =
  | { kind: "ack" }
  | { kind: "retry"; delayMs: number }
  | { kind: "dead"; reason: string; body: unknown };

/** Runs the parser and the handler on a decoded body; never rejects. */
export async function decide<T>(
  queue: string,
  raw: unknown,
  attempt: number,
  handler: Handler<T>,
  settings: ConsumeSettings<T>,
  logger: Logger,
): Promise<Outcome> {
  let body: T;
  try {
    body = settings.parse(raw);
  } catch (error) {
    return { kind: "dead", reason: reasonOf(error), body: raw };
  }
  try {
    await handler({ body, attempt, isLastAttempt: attempt >= settings.maxAttempts });
    return { kind: "ack" };
  } catch (error) {
    if (error instanceof PermanentError || attempt >= settings.maxAttempts) {
      return { kind: "dead", reason: reasonOf(error), body: raw };
    }
    const delayMs = retryDelay(settings.retryDelayMs, attempt);
    logger.warn({ queue, attempt, delayMs, err: error }, "message handler failed; retrying");
    return { kind: "retry", delayMs };
  }
}

/** What goes to `queue`'s dead-letter queue for a message that failed on its `attempts`-th delivery. */
export function deadLetter(
  queue: string,
  attempts: number,
  outcome: { reason: string; body: unknown },
): DeadLetter {
  return { queue, reason: outcome.reason, attempts, body: outcome.body, deadAt: new Date().toISOString() };
}

export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

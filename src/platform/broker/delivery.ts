import { setTimeout as sleep } from "node:timers/promises";
import { isDatabaseUnavailable } from "../database.ts";
import { errorMessage } from "../error-message.ts";
import type { Logger } from "../logger.ts";
import { unavailableCause } from "../unavailable.ts";
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
  maxRetryDelayMs: number;
  outageDelayMs: { initial: number; max: number };
  holdLimitMs: number | undefined;
}

export function consumeSettings<T>(options: ConsumeOptions<T>): ConsumeSettings<T> {
  const {
    parse,
    concurrency,
    maxAttempts = 5,
    retryDelayMs = 5000,
    maxRetryDelayMs = 30 * 60_000,
    outageDelayMs = { initial: 500, max: 15_000 },
    holdLimitMs,
  } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
  }
  for (const [name, value] of Object.entries({
    retryDelayMs,
    maxRetryDelayMs,
    "outageDelayMs.initial": outageDelayMs.initial,
    "outageDelayMs.max": outageDelayMs.max,
  })) {
    if (!Number.isFinite(value) || value < 0) {
      throw new RangeError(`${name} must be a non-negative number, got ${value}`);
    }
  }
  if (holdLimitMs !== undefined && !(Number.isInteger(holdLimitMs) && holdLimitMs > 0)) {
    throw new RangeError(`holdLimitMs must be a positive integer, got ${holdLimitMs}`);
  }
  return { parse, concurrency, maxAttempts, retryDelayMs, maxRetryDelayMs, outageDelayMs, holdLimitMs };
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
  | { kind: "dead"; reason: string; body: unknown }
  /** Not handled: the outcome was no longer wanted (taken back, closing); it goes back to the queue as it was. */
  | { kind: "release" };

/** The backend an error says is unavailable, or undefined for any other failure. */
export function unavailableBackend(error: unknown): string | undefined {
  if (error instanceof PermanentError) return undefined;
  return unavailableCause(error)?.backend ?? (isDatabaseUnavailable(error) ? "database" : undefined);
}

/**
 * One per consumer: closed while one of its handlers waits out an outage, so that no other
 * message is started meanwhile (they would only fail the same way); opened by the first handler
 * that gets through, whatever its result.
 */
export interface OutageGate {
  /** Resolves once the gate is open, or when `signal` aborts. */
  passed(signal: AbortSignal): Promise<void>;
  close(): void;
  open(): void;
}

export function createOutageGate(): OutageGate {
  let closed: PromiseWithResolvers<void> | undefined;
  return {
    async passed(signal) {
      if (!closed || signal.aborted) return;
      const { promise, resolve } = Promise.withResolvers<void>();
      const onAbort = () => resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      await Promise.race([closed.promise, promise]);
      signal.removeEventListener("abort", onAbort);
    },
    close() {
      closed ??= Promise.withResolvers<void>();
    },
    open() {
      closed?.resolve();
      closed = undefined;
    },
  };
}

/** Runs the parser and the handler on a decoded body; never rejects. */
export async function decide<T>(
  queue: string,
  raw: unknown,
  attempt: number,
  handler: Handler<T>,
  settings: ConsumeSettings<T>,
  context: { logger: Logger; gate: OutageGate; signal: AbortSignal },
): Promise<Outcome> {
  const { logger, gate, signal } = context;
  let body: T;
  try {
    body = settings.parse(raw);
  } catch (error) {
    return { kind: "dead", reason: errorMessage(error), body: raw };
  }
  await gate.passed(signal);
  for (let outage = 0; ; outage++) {
    if (signal.aborted) return { kind: "release" };
    try {
      await handler({ body, attempt, isLastAttempt: attempt >= settings.maxAttempts, signal });
      gate.open();
      return { kind: "ack" };
    } catch (error) {
      // Stopped because the message was taken back: no outcome of its own.
      if (signal.aborted) return { kind: "release" };
      const backend = unavailableBackend(error);
      if (backend !== undefined) {
        // The backend's fault, not the message's: wait for it with this message in hand, as
        // long as it takes, and start nothing else meanwhile.
        gate.close();
        const { initial, max } = settings.outageDelayMs;
        const delayMs = Math.min(max, initial * 2 ** Math.min(outage, 30));
        logger.warn(
          { queue, attempt, backend, delayMs, err: errorMessage(error) },
          "backend unavailable; the message waits for it without using up an attempt",
        );
        await sleep(delayMs, undefined, { signal }).catch(() => {});
        continue;
      }
      gate.open();
      if (error instanceof PermanentError || attempt >= settings.maxAttempts) {
        return { kind: "dead", reason: errorMessage(error), body: raw };
      }
      const delayMs = retryDelay(settings.retryDelayMs, attempt, settings.maxRetryDelayMs);
      logger.warn({ queue, attempt, delayMs, err: error }, "message handler failed; retrying");
      return { kind: "retry", delayMs };
    }
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

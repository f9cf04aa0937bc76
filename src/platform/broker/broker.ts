import { UnavailableError } from "../unavailable.ts";

/**
 * The message broker as the services see it: durable work queues with at-least-once delivery.
 *
 * A handler that resolves acknowledges its message. A handler that throws gets the message back
 * after a delay, with `attempt` counting up, until `maxAttempts`; then, or at once for a
 * `PermanentError` (and for a body that fails `parse`), the message goes to the dead-letter queue
 * `<queue>.dead` as a `DeadLetter` carrying the reason. Handlers must therefore be idempotent.
 *
 * An outage is not the message's fault: a handler that throws an `UnavailableError` (or a
 * database-unavailable error) is run again on the same message with capped exponential backoff
 * for as long as the outage lasts, without using up an attempt and never dead-lettered, and the
 * consumer starts no other message meanwhile.
 */
export interface Broker {
  /** True when accepted messages survive a process restart (RabbitMQ); false in-process. */
  readonly durable: boolean;
  /** Resolves once the broker has taken the message (publisher confirm); rejects otherwise. */
  publish(queue: string, body: object): Promise<void>;
  consume<T>(queue: string, handler: Handler<T>, options: ConsumeOptions<T>): Promise<Consumer>;
  /**
   * Fan-out for live notifications: every current subscriber of `topic` (each gateway replica)
   * gets the message once; nothing is kept for subscribers that are not there.
   */
  broadcast(topic: string, body: object): Promise<void>;
  /** Listens to a topic until the returned consumer is closed. A throwing listener is logged, never fatal. */
  subscribe(topic: string, listener: (body: unknown) => void): Promise<Consumer>;
  /**
   * How many messages of `queue` wait for a consumer now (not those in a consumer's hands nor
   * those waiting for a retry); 0 for a queue never used. The gateway's sweep asks it: while the
   * `video` queue has a backlog, a job still `queued` may simply be waiting its turn.
   */
  waiting(queue: string): Promise<number>;
  /** Throws when the broker cannot be reached (readiness checks). */
  check(): Promise<void>;
  close(): Promise<void>;
}

export interface Delivery<T> {
  body: T;
  /** 1 on the first delivery, 2 on the first retry, and so on. */
  attempt: number;
  /** A failure now sends the message to the dead-letter queue instead of retrying it. */
  isLastAttempt: boolean;
  /**
   * Aborted when the outcome is no longer wanted: the broker has taken the message back (its
   * channel or connection was lost, so it is redelivered, perhaps to another process) or the
   * consumer is closing. Long work stops on it and stores or reports nothing after it.
   */
  signal: AbortSignal;
}

export type Handler<T> = (delivery: Delivery<T>) => Promise<void>;

export interface ConsumeOptions<T> {
  /** Validates the decoded JSON body; a throw dead-letters the message with the error's message. */
  parse: (body: unknown) => T;
  /** Messages handled at the same time by this consumer (the prefetch). */
  concurrency: number;
  /** Deliveries before a failing message is dead-lettered (default 5). */
  maxAttempts?: number;
  /** Wait before a failed message is delivered again; doubles with each attempt (default 5 s). */
  retryDelayMs?: number;
  /** The longest wait between two attempts, however many there are (default 30 min). */
  maxRetryDelayMs?: number;
  /** Backoff while a backend is unavailable: first wait and cap (default 500 ms, 15 s). */
  outageDelayMs?: { initial: number; max: number };
  /**
   * The longest a handler may hold a message (a conversion under its time limit). RabbitMQ takes
   * a message back from a consumer that holds it longer than its consumer timeout (30 min by
   * default): this is asked of it as the consumer's own timeout (`x-consumer-timeout`, RabbitMQ
   * 3.12 and later), with a warning at start where the server cannot do that.
   */
  holdLimitMs?: number;
}

export interface Consumer {
  /**
   * Stops taking messages and waits for the ones in hand to finish. Their handlers' signal aborts
   * after `graceMs` (default 0: at once), so a handler that honours it gives its message back.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  /** How long the handlers in hand may go on before their signal aborts (a drain on shutdown). */
  graceMs?: number;
}

/** What the dead-letter queue `<queue>.dead` holds. */
export interface DeadLetter {
  queue: string;
  reason: string;
  attempts: number;
  /** The original body as received (may be anything, even not JSON, as a string). */
  body: unknown;
  deadAt: string;
}

/** The broker cannot be reached (now, or within the wait): the caller may answer 503 and retry later. */
export class BrokerUnavailableError extends UnavailableError {
  override name = "BrokerUnavailableError";
  constructor(message: string, options?: ErrorOptions) {
    super("queue", message, options);
  }
}

/** Thrown by a handler for a failure that retrying cannot fix. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

export const deadLetterQueue = (queue: string): string => `${queue}.dead`;

/** Exponential backoff for the n-th retry (attempt 2 waits `base`, attempt 3 waits 2×base, …), at most `maxMs`. */
export function retryDelay(baseMs: number, failedAttempt: number, maxMs = Number.POSITIVE_INFINITY): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, failedAttempt - 1));
}

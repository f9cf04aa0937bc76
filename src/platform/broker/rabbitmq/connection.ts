import { type ChannelModel, connect, type RecoveringChannelModel } from "amqplib";
import { errorMessage } from "../../error-message.ts";
import type { Logger } from "../../logger.ts";
import { BrokerUnavailableError } from "../broker.ts";
import { isOpen, newSession, type Session } from "./session.ts";

/**
 * The one connection to RabbitMQ: amqplib's recovering connection, reopened with exponential
 * backoff and jitter when lost. Each (re)connection becomes a `Session` only after the broker's
 * setup steps ran on it (topology, consumers, subscriptions); until then callers wait for it,
 * up to their deadline.
 */

export interface ConnectionOptions {
  /** amqp:// or amqps:// URL; the path is the vhost. */
  url: string;
  logger: Logger;
  heartbeatSeconds: number;
  /** How long the first connection may take, retries included. */
  connectTimeoutMs: number;
  /** How long callers wait for a lost connection to come back (what its error says). */
  unavailableTimeoutMs: number;
  /** The reconnect backoff: the first delay and the cap. */
  reconnectDelayMs: { initial: number; max: number };
  connectionName: string;
  /** What each new connection needs before anyone may use it, in order (read as it is run). */
  setup(s: Session): Iterable<SetupStep>;
  /** What the "reconnected" log line counts. */
  restored(): { consumers: number; subscriptions: number };
}

export interface SetupStep {
  /** For the log when it fails. */
  what: string;
  run(): Promise<void>;
  /** After a failure that is not the connection's: try again later, for this step alone. */
  retryLater?(): void;
}

export interface Connection {
  /** host:port/vhost, never the credentials. */
  readonly where: string;
  /** True once closed (or when the first connection failed): nothing waits for a connection any more. */
  readonly stopped: boolean;
  /** Connects and waits for the first session; rejects (and stops) when that fails or takes too long. */
  open(): Promise<void>;
  /** The current session; a `BrokerUnavailableError` while disconnected. */
  connected(): Session;
  /** When a wait for the connection that starts now gives up (`unavailableTimeoutMs` from now). */
  deadline(): number;
  /** The current session, or the next one if it comes before `deadline`. */
  sessionBefore(deadline: number): Promise<Session>;
  /** `work`, or a `BrokerUnavailableError` saying RabbitMQ `what` once `deadline` has passed. */
  beforeDeadline<T>(deadline: number, what: string, work: Promise<T>): Promise<T>;
  /**
   * Runs `task` after `delayMs` if `s` is still the current session then; a later session is
   * set up by the recovery anyway.
   */
  later(s: Session, delayMs: number, task: () => void): void;
  /** Throws when RabbitMQ cannot be reached now (readiness checks). */
  check(): Promise<void>;
  close(): Promise<void>;
}

export function createConnection(options: ConnectionOptions): Connection {
  const { logger, heartbeatSeconds, connectTimeoutMs, unavailableTimeoutMs, reconnectDelayMs } = options;
  const url = new URL(options.url);
  url.searchParams.set("heartbeat", String(heartbeatSeconds));
  const where = describeUrl(url);

  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<Waiter>();
  let recovering: RecoveringChannelModel | undefined;
  let session: Session | undefined;
  let connectedOnce = false;
  let disconnectedAt: number | undefined;
  let lastConnectError: Error | undefined;
  let stopped = false;

  interface Waiter {
    resolve(session: Session): void;
    reject(error: Error): void;
    timer: NodeJS.Timeout;
  }

  /** Runs after every (re)connection, before anyone may use it. */
  async function setup(model: ChannelModel): Promise<void> {
    const s = newSession(model, logger);
    await s.publisher();
    for (const step of options.setup(s)) {
      try {
        await step.run();
      } catch (error) {
        // A lost connection fails the whole setup (the recovery tries again); any other failure
        // (say, a queue declared elsewhere with other arguments) is logged and retried for that
        // one step, so it does not keep the others down.
        if (!s.open) throw error;
        logger.error({ err: errorMessage(error), broker: where }, `RabbitMQ setup failed: ${step.what}`);
        step.retryLater?.();
      }
    }
    if (!s.open) throw new Error("the connection closed during setup");
    session = s;
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(s);
    }
    waiters.clear();
    if (connectedOnce) {
      logger.info(
        {
          broker: where,
          downtimeMs: disconnectedAt === undefined ? undefined : Date.now() - disconnectedAt,
          ...options.restored(),
        },
        "reconnected to RabbitMQ; consumers resumed",
      );
    } else {
      logger.info({ broker: where, heartbeatSeconds }, "connected to RabbitMQ");
    }
    connectedOnce = true;
  }

  async function open(): Promise<void> {
    const connection = await connect(url.toString(), {
      timeout: 10_000,
      // Without it, Nagle's algorithm holds a small publish back until the previous one is
      // acknowledged by TCP (up to 40 ms with delayed ACKs).
      noDelay: true,
      clientProperties: { connection_name: options.connectionName },
      recovery: {
        initialDelay: reconnectDelayMs.initial,
        maxDelay: reconnectDelayMs.max,
        factor: 2,
        jitter: 0.2,
        maxRetries: Number.POSITIVE_INFINITY,
        waitForConnect: false,
        setup,
      },
    });
    recovering = connection;
    connection.on("disconnect", (error: Error) => {
      session = undefined;
      disconnectedAt = Date.now();
      logger.warn({ err: error.message, broker: where }, "lost the connection to RabbitMQ; reconnecting");
    });
    connection.on("connect-failed", (error: Error) => {
      lastConnectError = error;
      if (connectedOnce)
        logger.warn({ err: error.message, broker: where }, "could not reconnect to RabbitMQ");
    });
    connection.on("reconnect-scheduled", ({ attempt, delay }: { attempt: number; delay: number }) => {
      if (connectedOnce)
        logger.debug({ attempt, delayMs: delay }, "next RabbitMQ connection attempt scheduled");
    });
    connection.on("blocked", (reason: string) =>
      logger.warn({ reason, broker: where }, "RabbitMQ blocks publishing (resource alarm)"),
    );
    connection.on("unblocked", () => logger.info({ broker: where }, "RabbitMQ accepts publishing again"));
    connection.on("error", (error: Error) =>
      logger.debug({ err: error.message }, "RabbitMQ connection error"),
    );
    connection.on("handler-error", (error: Error, event: string) =>
      logger.error({ err: error, event }, "a RabbitMQ event listener threw"),
    );
    await waitForFirstConnection(connection);
  }

  async function waitForFirstConnection(connection: RecoveringChannelModel): Promise<void> {
    const { promise: failed, reject } = Promise.withResolvers<never>();
    const timer = setTimeout(
      () =>
        reject(
          new BrokerUnavailableError(
            `could not connect to RabbitMQ at ${where} within ${connectTimeoutMs} ms: ${lastConnectError?.message ?? "no answer"}`,
          ),
        ),
      connectTimeoutMs,
    );
    // A refused login or an unknown vhost will not fix itself: say so at once. (amqplib reports
    // a vhost it may not open only as an unexpected ConnectionClose.)
    const onFailed = (error: Error) => {
      if (/ACCESS[-_]REFUSED|NOT[-_]ALLOWED|got <ConnectionClose/.test(error.message)) {
        reject(
          new Error(
            `RabbitMQ at ${where} refused the connection (wrong credentials, or a vhost that does not exist or is not allowed): ${error.message}`,
          ),
        );
      }
    };
    connection.on("connect-failed", onFailed);
    try {
      await Promise.race([connection.waitForConnect(), failed]);
    } catch (error) {
      stopped = true;
      await connection.close().catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
      connection.off("connect-failed", onFailed);
    }
  }

  function connected(): Session {
    if (!session?.open) throw new BrokerUnavailableError(`not connected to RabbitMQ at ${where}`);
    return session;
  }

  function sessionBefore(deadline: number): Promise<Session> {
    if (session?.open) return Promise.resolve(session);
    if (stopped) return Promise.reject(new Error("the broker is closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(
          () => {
            waiters.delete(waiter);
            reject(
              new BrokerUnavailableError(
                `RabbitMQ at ${where} is unavailable: no connection within ${unavailableTimeoutMs} ms`,
              ),
            );
          },
          Math.max(0, deadline - Date.now()),
        ),
      };
      waiters.add(waiter);
    });
  }

  function beforeDeadline<T>(deadline: number, what: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const ms = Math.max(0, deadline - Date.now());
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`RabbitMQ at ${where} ${what} within ${ms} ms`)),
        ms,
      );
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  return {
    where,
    get stopped() {
      return stopped;
    },
    open,
    deadline: () => Date.now() + unavailableTimeoutMs,
    connected,
    sessionBefore,
    beforeDeadline,

    later(s, delayMs, task) {
      // Once stopped, nothing may keep the process alive.
      if (stopped) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!stopped && s.open && session === s) task();
      }, delayMs);
      timers.add(timer);
    },

    async check() {
      const s = connected();
      const channel = await beforeDeadline(Date.now() + 2000, "opened no channel", s.publisher());
      if (!isOpen(channel)) throw new BrokerUnavailableError(`no open channel to RabbitMQ at ${where}`);
    },

    async close() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error("the broker is closed"));
      }
      waiters.clear();
      session = undefined;
      await recovering?.close().catch((error: unknown) => {
        logger.debug({ err: errorMessage(error) }, "closing the RabbitMQ connection failed");
      });
      logger.info({ broker: where }, "RabbitMQ connection closed");
    },
  };
}

/** host:port/vhost, never the credentials. */
function describeUrl(url: URL): string {
  const vhost = decodeURIComponent(url.pathname.slice(1)) || "/";
  return `${url.hostname}:${url.port || (url.protocol === "amqps:" ? 5671 : 5672)}/${vhost}`;
}

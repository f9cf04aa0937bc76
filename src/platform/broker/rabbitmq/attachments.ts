import type { Channel } from "amqplib";
import { errorMessage } from "../../error-message.ts";
import type { Logger } from "../../logger.ts";
import type { Consumer } from "../broker.ts";
import type { Connection, SetupStep } from "./connection.ts";
import type { Session } from "./session.ts";
import { forgetTopology } from "./topology.ts";

/**
 * What consumes on a channel of its own (a consumer of a queue, a subscription to a topic). It
 * is attached on every new connection by the setup, and attached again, with backoff, when its
 * channel closes while the connection stays up (the queue was deleted, a consumer timeout).
 */
export interface Attachment {
  /** Names it in the logs: "consumer of jobs". */
  readonly description: string;
  /** Set by close(): it is not attached again. */
  closed: boolean;
  /** The session it is attached to, or being attached to. */
  session?: Session | undefined;
  attached?: Promise<void> | undefined;
  /** The channel it consumes on, once it does. */
  channel?: Channel | undefined;
  /** Declares what it consumes from. */
  declare(s: Session): Promise<void>;
  /** Starts consuming on its new channel and sets `channel`; minds `closed` meanwhile. */
  start(channel: Channel): Promise<void>;
  /** Before close() closes the channel: stop and let the work in hand finish. */
  finish?(channel: Channel | undefined): Promise<void>;
}

/** The broker's attachments of one kind. */
export interface Attachments<A extends Attachment> {
  readonly size: number;
  /** Attaches it now (waiting for a lost connection up to the deadline), and from then on. */
  add(attachment: A): Promise<Consumer>;
  /** Setup steps that attach them all to a new connection. */
  restore(s: Session): Iterable<SetupStep>;
  closeAll(): Promise<void>;
}

export function createAttachments<A extends Attachment>(
  connection: Connection,
  logger: Logger,
): Attachments<A> {
  const all = new Set<A>();

  function attach(s: Session, a: A): Promise<void> {
    if (a.closed) return Promise.resolve();
    if (a.session === s && a.attached) return a.attached;
    a.session = s;
    const attached = (async () => {
      await a.declare(s);
      const channel = await s.openChannel(a.description);
      channel.on("close", () => {
        if (a.channel === channel) a.channel = undefined;
        if (a.session === s && a.attached === attached) {
          a.session = undefined;
          a.attached = undefined;
        }
        // Closed with the connection: setup restores it. Closed alone (the queue was deleted, a
        // consumer timeout): open another channel on this connection.
        if (!a.closed) reattachLater(s, a);
      });
      try {
        await a.start(channel);
      } catch (error) {
        await channel.close().catch(() => {});
        throw error;
      }
    })();
    a.attached = attached;
    attached.catch(() => {
      if (a.attached === attached) {
        a.attached = undefined;
        a.session = undefined;
      }
    });
    return attached;
  }

  function reattachLater(s: Session, a: A, failures = 0): void {
    connection.later(s, Math.min(30_000, 500 * 2 ** failures), () => {
      if (a.session === s || a.closed) return;
      // What closed the channel may have been a deleted queue or exchange: declare anew.
      forgetTopology(s);
      attach(s, a).then(
        () => logger.info({ target: a.description }, "RabbitMQ channel reopened"),
        (error: unknown) => {
          logger.warn({ err: errorMessage(error), target: a.description }, "could not reopen a channel");
          reattachLater(s, a, failures + 1);
        },
      );
    });
  }

  async function close(a: A): Promise<void> {
    a.closed = true;
    await a.attached?.catch(() => {});
    const { channel } = a;
    await a.finish?.(channel);
    await channel?.close().catch(() => {});
    all.delete(a);
  }

  return {
    get size() {
      return all.size;
    },

    async add(a) {
      all.add(a);
      try {
        await attach(await connection.sessionBefore(connection.deadline()), a);
      } catch (error) {
        await close(a);
        throw error;
      }
      let closed: Promise<void> | undefined;
      return {
        close() {
          closed ??= close(a);
          return closed;
        },
      };
    },

    *restore(s) {
      for (const a of all) {
        yield { what: a.description, run: () => attach(s, a), retryLater: () => reattachLater(s, a) };
      }
    },

    async closeAll() {
      await Promise.all([...all].map((a) => close(a)));
    },
  };
}

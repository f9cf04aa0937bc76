import type { Channel, ChannelModel, ConfirmChannel, Message } from "amqplib";
import type { Logger } from "../../logger.ts";
import { forgetTopology } from "./topology.ts";

/** One connection and what was set up on it; a reconnection starts a new session. */
export interface Session {
  readonly model: ChannelModel;
  /** False once the connection closed (its channels closed with it). */
  open: boolean;
  /** Queues and exchanges asserted on this connection (declarations in progress included). */
  readonly declared: Map<string, Promise<void>>;
  /** Message ids RabbitMQ returned as unroutable, until their confirm arrives. */
  readonly returned: Set<string>;
  /** The confirm channel every publish goes through. */
  publisher(): Promise<ConfirmChannel>;
  /** For declarations, whose failures close their channel. */
  topology(): Promise<Channel>;
  /** A channel of its own, for a consumer or a subscription; `role` names it in the logs. */
  openChannel(role: string): Promise<Channel>;
}

/** Channels not closed yet: amqplib does not tell whether a channel is still open. */
const openChannels = new WeakSet<Channel>();

/** False once the channel closed: what was delivered on it has gone back to its queue. */
export function isOpen(channel: Channel): boolean {
  return openChannels.has(channel);
}

export function newSession(model: ChannelModel, logger: Logger): Session {
  function track<C extends Channel>(channel: C, role: string): C {
    openChannels.add(channel);
    channel.on("error", (error: Error) => {
      // A channel error closes the channel (its 'close' handler takes over); on a connection that
      // is going away every channel reports it, which says nothing new.
      if (session.open) logger.warn({ err: error.message, channel: role }, "RabbitMQ closed a channel");
    });
    channel.on("close", () => openChannels.delete(channel));
    return channel;
  }

  const session: Session = {
    model,
    open: true,
    declared: new Map(),
    returned: new Set(),
    publisher: lazyChannel(async () => {
      const channel = track(await model.createConfirmChannel(), "publisher");
      channel.on("return", (message: Message) => {
        const id = message.properties.messageId as string | undefined;
        if (id) session.returned.add(id);
      });
      // Publishing to an exchange that was deleted closes the channel (404): whatever this
      // connection declared may be gone, so declare again before the next publish.
      channel.on("error", () => forgetTopology(session));
      return channel;
    }),
    topology: lazyChannel(async () => track(await model.createChannel(), "topology")),
    openChannel: async (role) => track(await model.createChannel(), role),
  };
  // The recovering connection takes over these listeners once setup is done; until then an
  // 'error' without a listener would be thrown.
  model.on("error", (error: Error) => logger.debug({ err: error.message }, "RabbitMQ connection error"));
  model.on("close", () => {
    session.open = false;
  });
  return session;
}

/** A channel opened on first use and again after it closed, as long as the connection lives. */
function lazyChannel<C extends Channel>(open: () => Promise<C>): () => Promise<C> {
  let current: Promise<C> | undefined;
  return () => {
    if (!current) {
      const opening = open().then(
        (channel) => {
          channel.on("close", () => {
            if (current === opening) current = undefined;
          });
          return channel;
        },
        (error: unknown) => {
          if (current === opening) current = undefined;
          throw error;
        },
      );
      current = opening;
    }
    return current;
  };
}

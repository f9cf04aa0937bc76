import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";

/**
 * RabbitMQ for tests: the server running on this machine (`TEST_AMQP_URL`, default
 * amqp://guest:guest@127.0.0.1:5672), administered with `rabbitmqctl` (needs root or the
 * rabbitmq user). Each test takes a virtual host of its own and deletes it afterwards, which
 * removes every queue, exchange and message it made, so the suite can run again and in parallel.
 */

const run = promisify(execFile);

export const testAmqpBaseUrl = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";

export interface TestVhost {
  /** AMQP URL of the virtual host, with the test user's credentials. */
  url: string;
  vhost: string;
  /** Deletes the virtual host with everything in it (closing its connections); idempotent. */
  delete(): Promise<void>;
}

export async function rabbitmqctl(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run("rabbitmqctl", ["--quiet", ...args], { timeout: 30_000 });
    return stdout;
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
    throw new Error(
      `rabbitmqctl ${args.join(" ")} failed (is RabbitMQ running, and are we root?): ${detail}`,
    );
  }
}

/** A fresh virtual host on which the test user (from `TEST_AMQP_URL`) may do everything. */
export async function createTestVhost(label = "test"): Promise<TestVhost> {
  const vhost = `vid2mp3-${label}-${randomUUID()}`;
  const base = new URL(testAmqpBaseUrl);
  const user = decodeURIComponent(base.username) || "guest";
  try {
    // The same as add_vhost + set_permissions in one rabbitmqctl run (each run starts an Erlang
    // VM, about 0.4 s), through the functions those commands call.
    const bin = (text: string) => `<<"${text.replace(/[\\"]/g, "\\$&")}">>`;
    const by = bin("vid2mp3-tests");
    await rabbitmqctl(
      "eval",
      `ok = rabbit_vhost:add(${bin(vhost)}, ${by}), ok = rabbit_auth_backend_internal:set_permissions(${bin(user)}, ${bin(vhost)}, <<".*">>, <<".*">>, <<".*">>, ${by}).`,
    );
  } catch {
    // Another RabbitMQ version: the documented commands.
    await rabbitmqctl("delete_vhost", vhost).catch(() => {});
    await rabbitmqctl("add_vhost", vhost);
    try {
      await rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*");
    } catch (error) {
      await rabbitmqctl("delete_vhost", vhost).catch(() => {});
      throw error;
    }
  }
  const url = new URL(base);
  url.pathname = `/${encodeURIComponent(vhost)}`;
  let deleted: Promise<void> | undefined;
  return {
    url: url.toString(),
    vhost,
    delete() {
      deleted ??= rabbitmqctl("delete_vhost", vhost).then(() => {});
      return deleted;
    },
  };
}

/**
 * Closes connections from the server side, as a network failure or a broker restart would:
 * those of one virtual host, or with no vhost every connection on the node.
 */
export async function closeConnections(options: { vhost?: string; reason?: string } = {}): Promise<void> {
  const reason = options.reason ?? "closed by a test";
  if (options.vhost) await rabbitmqctl("close_all_connections", "--vhost", options.vhost, reason);
  else await rabbitmqctl("close_all_connections", "--global", reason);
}

export interface QueueInfo {
  name: string;
  durable: boolean;
  /** Ready plus unacknowledged. */
  messages: number;
  messagesReady: number;
  messagesUnacknowledged: number;
  messagesPersistent: number;
  consumers: number;
  arguments: string;
}

/** The queues of a virtual host as the server sees them. */
export async function listQueues(vhost: string): Promise<QueueInfo[]> {
  const columns = [
    "name",
    "durable",
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "messages_persistent",
    "consumers",
    "arguments",
  ];
  const out = await rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", ...columns);
  return out
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const [name = "", durable, messages, ready, unacked, persistent, consumers, ...args] = line.split("\t");
      return {
        name,
        durable: durable === "true",
        messages: Number(messages),
        messagesReady: Number(ready),
        messagesUnacknowledged: Number(unacked),
        messagesPersistent: Number(persistent),
        consumers: Number(consumers),
        arguments: args.join("\t"),
      };
    });
}

/** The number of client connections to a virtual host. */
export async function countConnections(vhost: string): Promise<number> {
  const out = await rabbitmqctl("list_connections", "--no-table-headers", "vhost");
  return out.split("\n").filter((line) => line.trim() === vhost).length;
}

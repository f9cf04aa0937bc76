/**
 * Stand-ins for deploy/compose.yaml's backing services where their images cannot be pulled (see
 * compose.override.yaml), run inside the stand-in Node image with the repository at /repo:
 *
 *   node backends.ts mariadb    applies deploy/k8s/overlays/dev/mariadb-init.sql to the machine's
 *                               MariaDB (CT_MYSQL_URL), every database and user name prefixed with
 *                               CT_PREFIX so that runs never meet, then stays up
 *   node backends.ts rabbitmq   waits until the machine's RabbitMQ (CT_AMQP_URL) accepts
 *                               connections, then stays up
 *
 * Each prints `ready` when done and exits on SIGTERM or when its standard input closes.
 */
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { createConnection } from "mysql2/promise";

/** The dev init script with this run's names: `vid2mp3_auth` → `<prefix>vid2mp3_auth`, `'auth'@` → `'<prefix>auth'@`. */
export function prefixedInitStatements(sql: string, prefix: string): string[] {
  return sql
    .replace(/--.*$/gm, "")
    .replace(/\bvid2mp3_(auth|gateway)\b/g, `${prefix}vid2mp3_$1`)
    .replace(/'(\w+)'@'%'/g, `'${prefix}$1'@'%'`)
    .split(";")
    .map((statement) => statement.trim())
    .filter(Boolean);
}

async function prepareMariadb(): Promise<void> {
  const url = required("CT_MYSQL_URL");
  const prefix = required("CT_PREFIX");
  const file = path.join(
    import.meta.dirname,
    "..",
    "..",
    "deploy",
    "k8s",
    "overlays",
    "dev",
    "mariadb-init.sql",
  );
  const connection = await createConnection(url);
  try {
    for (const statement of prefixedInitStatements(await readFile(file, "utf8"), prefix)) {
      await connection.query(statement);
    }
  } finally {
    await connection.end();
  }
}

async function waitForTcp(url: string, timeoutMs: number): Promise<void> {
  const { hostname, port } = new URL(url);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(Number(port), hostname, () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing answers at ${hostname}:${port}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

if (import.meta.main) {
  const role = process.argv[2];
  if (role === "mariadb") await prepareMariadb();
  else if (role === "rabbitmq") await waitForTcp(required("CT_AMQP_URL"), 60_000);
  else throw new Error("usage: backends.ts mariadb|rabbitmq");
  process.stdout.write("ready\n");
  process.on("SIGTERM", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
}

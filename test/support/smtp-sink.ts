/**
 * A real SMTP server for tests, run as its own OS process by `smtp-server.ts`:
 *
 *   node smtp-sink.ts <folder> <port> [<user>:<password>]
 *
 * It accepts every mail (after AUTH PLAIN/LOGIN when credentials are given) and writes each one,
 * whole, as `<folder>/<time>-<n>.eml` before it answers 250, so a sender that got its 250 finds
 * its mail on disk. Recipients at the reserved domain `rejected.invalid` are refused with 550.
 * Prints `SMTP sink listening on port <n>` once it accepts connections; exits when its stdin
 * closes (the parent died), on SIGTERM, or on SIGKILL from a test.
 */
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { SMTPServer } from "smtp-server";

const [folder, portArgument, credentials] = process.argv.slice(2);
if (!folder || portArgument === undefined)
  throw new Error("usage: smtp-sink.ts <folder> <port> [user:password]");
const [user, password] = credentials
  ? [credentials.slice(0, credentials.indexOf(":")), credentials.slice(credentials.indexOf(":") + 1)]
  : [];

let count = 0;
const server = new SMTPServer({
  logger: false,
  // Plain TCP on localhost; AUTH over it only because this is a test.
  disabledCommands: credentials ? ["STARTTLS"] : ["STARTTLS", "AUTH"],
  allowInsecureAuth: true,
  authOptional: !credentials,
  size: 10 * 1024 * 1024,
  onAuth(auth, _session, callback) {
    if (auth.username === user && auth.password === password) callback(null, { user: auth.username });
    else callback(Object.assign(new Error("Invalid username or password"), { responseCode: 535 }));
  },
  onRcptTo(address, _session, callback) {
    if (address.address.toLowerCase().endsWith("@rejected.invalid")) {
      callback(Object.assign(new Error(`Mailbox ${address.address} does not exist`), { responseCode: 550 }));
    } else {
      callback();
    }
  },
  onData(stream, _session, callback) {
    count += 1;
    const name = `${Date.now()}-${String(count).padStart(6, "0")}`;
    const temp = path.join(folder, `.${name}-${randomUUID()}.tmp`);
    pipeline(stream, createWriteStream(temp, { flags: "wx" }))
      .then(() => rename(temp, path.join(folder, `${name}.eml`)))
      .then(
        () => callback(),
        async (error: Error) => {
          await rm(temp, { force: true });
          callback(error);
        },
      );
  },
});

server.listen(Number(portArgument), "127.0.0.1", () => {
  const address = server.server.address();
  const port = typeof address === "object" && address ? address.port : portArgument;
  process.stdout.write(`SMTP sink listening on port ${port}\n`);
});
server.on("error", (error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});

const exit = () => {
  server.close(() => process.exit(0));
  // Open client connections would keep close() waiting; a test stopping the server means it.
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.on("SIGTERM", exit);
process.stdin.on("close", exit);
process.stdin.resume();

import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import path from "node:path";
import { pipeline } from "node:stream/promises";

/**
 * The baseline of the HTTP benchmarks: a bare `node:http` server, run as its own process like
 * vid2mp3, on 127.0.0.1 and a free port. `node bench/bare-server.ts <mode> <scratch dir>`:
 * - `json`: answers every request with a small JSON object about the size of a job;
 * - `drain`: reads a request's body to the end and answers 202 with its size;
 * - `disk`: writes the body to a file in the scratch dir, fsynced before close (the plain way:
 *   vid2mp3's folder blob store spreads the flush over the upload), answers 202 and deletes it.
 * Prints `{"url":"http://…"}` once listening; SIGTERM stops it.
 */

const mode = process.argv[2];
const dir = process.argv[3] ?? ".";

const job = JSON.stringify({
  id: "7d4b7c3e-1f0a-4c57-9d7e-2a5f8e0b6c11",
  status: "done",
  fileName: "holiday.mp4",
  size: 15611806,
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:01.000Z",
  progress: 1,
  durationSeconds: 60,
  mp3Id: "0b9e1c2d-3a4f-4b6c-8d7e-9f0a1b2c3d4e",
  error: null,
});

function answer(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  response.end(body);
}

async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (mode === "json") {
    request.resume();
    return answer(response, 200, job);
  }
  if (mode === "drain") {
    let bytes = 0;
    for await (const chunk of request) bytes += (chunk as Buffer).length;
    return answer(response, 202, JSON.stringify({ bytes }));
  }
  const file = path.join(dir, `${process.hrtime.bigint()}.part`);
  try {
    await pipeline(request, createWriteStream(file, { flush: true }));
  } finally {
    await rm(file, { force: true });
  }
  return answer(response, 202, JSON.stringify({ stored: true }));
}

if (mode !== "json" && mode !== "drain" && mode !== "disk") {
  process.stderr.write("usage: node bench/bare-server.ts json|drain|disk [scratch dir]\n");
  process.exit(2);
}

const server = createServer((request, response) => {
  handle(request, response).catch((error: unknown) => {
    if (!response.headersSent) answer(response, 500, JSON.stringify({ error: String(error) }));
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${address.port}` })}\n`);
});
process.on("SIGTERM", () => {
  server.close();
  server.closeAllConnections();
});

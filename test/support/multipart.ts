import { randomBytes } from "node:crypto";

/**
 * A multipart/form-data body with one file, produced chunk by chunk by `file`, so a test controls
 * the pace of an upload (pause it, break things meanwhile, then go on).
 */
export function streamingMultipart(
  fileName: string,
  file: AsyncIterable<Uint8Array>,
): { contentType: string; body: ReadableStream<Uint8Array> } {
  const boundary = `----vid2mp3-${randomBytes(8).toString("hex")}`;
  const encoder = new TextEncoder();
  async function* parts() {
    yield encoder.encode(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${fileName}"\r\n` +
        "Content-Type: application/octet-stream\r\n\r\n",
    );
    yield* file;
    yield encoder.encode(`\r\n--${boundary}--\r\n`);
  }
  const iterator = parts();
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    body: new ReadableStream({
      async pull(controller) {
        const { value, done } = await iterator.next();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    }),
  };
}

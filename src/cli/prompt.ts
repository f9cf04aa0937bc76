import { createInterface } from "node:readline/promises";

/** Ctrl-C or Ctrl-D at a prompt. */
export class PromptCancelled extends Error {
  override name = "PromptCancelled";
  constructor() {
    super("Cancelled.");
  }
}

export const canPrompt = (): boolean => process.stdin.isTTY === true && process.stderr.isTTY === true;

/** Asks on the terminal and echoes what is typed (an e-mail). The question goes to stderr. */
export async function promptVisible(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return (await rl.question(question)).trim();
  } finally {
    rl.close();
  }
}

/**
 * Asks on the terminal without echoing what is typed (a password): the terminal is put in raw
 * mode and the characters are read one by one (Backspace and Ctrl-U edit, Ctrl-C cancels).
 */
export async function promptHidden(question: string): Promise<string> {
  const input = process.stdin;
  const output = process.stderr;
  output.write(question);
  input.setRawMode(true);
  input.setEncoding("utf8");
  input.resume();
  return new Promise<string>((resolve, reject) => {
    let value = "";
    const finish = (outcome: () => void) => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      output.write("\n");
      outcome();
    };
    const onData = (chunk: string) => {
      // Arrow keys and other escape sequences are not part of a password.
      if (chunk.startsWith("\u001b")) return;
      for (const char of chunk) {
        if (char === "\r" || char === "\n") return finish(() => resolve(value));
        if (char === "\u0003" || (char === "\u0004" && value === "")) {
          return finish(() => reject(new PromptCancelled()));
        }
        if (char === "\u007f" || char === "\b") value = Array.from(value).slice(0, -1).join("");
        else if (char === "\u0015") value = "";
        else if (char >= " ") value += char;
      }
    };
    input.on("data", onData);
  });
}

/** All of standard input, without the one line break that `echo` and here-strings add at the end. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

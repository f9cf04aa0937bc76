/**
 * What must be done when the user presses Ctrl-C: a bar to stop, a partial file to remove, a word
 * on how to pick up the work later. Run last registered first, so a bar is gone before the words.
 */
const cleanups = new Set<() => void>();

/** Runs `cleanup` (synchronously) if the command is interrupted; call the answer once it is moot. */
export function onInterrupt(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  return () => {
    cleanups.delete(cleanup);
  };
}

let installed = false;

/** Ctrl-C / SIGTERM: run the cleanups, then exit 130 / 143 as a shell expects. */
export function exitOnInterrupt(): void {
  if (installed) return;
  installed = true;
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      for (const cleanup of [...cleanups].reverse()) {
        try {
          cleanup();
        } catch {
          // best effort: the process is ending
        }
      }
      process.exit(code);
    });
  }
}

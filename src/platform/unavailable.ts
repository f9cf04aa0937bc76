/**
 * The one notion of "a backend cannot be reached right now" that every adapter raises (database,
 * storage, queue, mail, auth): not the request's or the message's fault, and worth retrying once
 * the backend is back. HTTP servers answer it `503 <backend>_unavailable`; consumers wait for the
 * backend instead of spending the message's attempts on it.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
  /** Which backend: `database`, `storage`, `queue`, `mail`, `auth`; the 503's code is `<backend>_unavailable`. */
  readonly backend: string;
  constructor(backend: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.backend = backend;
  }
}

/** The UnavailableError an error is or wraps (through `cause` or an AggregateError), if any. */
export function unavailableCause(error: unknown, depth = 0): UnavailableError | undefined {
  if (typeof error !== "object" || error === null || depth > 8) return undefined;
  if (error instanceof UnavailableError) return error;
  if (error instanceof AggregateError) {
    for (const inner of error.errors) {
      const found = unavailableCause(inner, depth + 1);
      if (found) return found;
    }
  }
  return "cause" in error ? unavailableCause(error.cause, depth + 1) : undefined;
}

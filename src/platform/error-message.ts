/**
 * One line saying what went wrong, for anything that was thrown: logs, dead letters, readiness
 * output and the CLI's messages all use it.
 *
 * Not everything thrown is an Error (some packages throw strings), and not every Error has a
 * message: Node's failed connection attempts can be an AggregateError with an empty one, whose
 * inner errors say what happened (`connect ECONNREFUSED 127.0.0.1:3306`), and some drivers' errors
 * carry only a code. Then the first inner error, the code, or the error's name stands in.
 */
export function errorMessage(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message) return error.message;
  if (error instanceof AggregateError && error.errors.length > 0) return errorMessage(error.errors[0]);
  const code = (error as NodeJS.ErrnoException).code;
  return typeof code === "string" && code !== "" ? code : error.name;
}

import { type Logger, pino } from "pino";

export type { Logger };

/** One JSON line per event on stdout (pino); `service` tells the four services apart in one stream. */
export function createLogger(level: string, service: string): Logger {
  return pino({ level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime });
}

import type { Outcome } from "../delivery.ts";

/**
 * Outcomes of handlers that finished after their delivery's channel was gone: RabbitMQ has put
 * the message back and will deliver it again; then it is settled with the outcome kept here
 * instead of running its handler a second time. Kept for a while only, and only so many.
 */

/** How long the outcome of a handler whose acknowledgement was lost is kept for its redelivery. */
const TTL_MS = 10 * 60_000;
const MAX_ENTRIES = 10_000;

export interface UnacknowledgedOutcomes {
  remember(key: string, outcome: Outcome): void;
  /** The outcome kept for `key`, forgotten as it is taken. */
  take(key: string): Outcome | undefined;
}

export function createUnacknowledgedOutcomes(): UnacknowledgedOutcomes {
  /** In insertion order, so the oldest come first. */
  const entries = new Map<string, { outcome: Outcome; at: number }>();
  return {
    remember(key, outcome) {
      const now = Date.now();
      for (const [oldKey, entry] of entries) {
        if (now - entry.at < TTL_MS && entries.size < MAX_ENTRIES) break;
        entries.delete(oldKey);
      }
      entries.set(key, { outcome, at: now });
    },
    take(key) {
      const entry = entries.get(key);
      entries.delete(key);
      return entry?.outcome;
    },
  };
}

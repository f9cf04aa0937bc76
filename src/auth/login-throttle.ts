/**
 * Slows password guessing. After `maxFailures` failed logins for one e-mail from one client
 * address within `windowMs`, that pair is refused (429) until the window has passed, even with
 * the right password; other addresses can still log in to the account, so a guesser cannot lock
 * its owner out. A successful login clears the count. Kept in memory per auth replica: spread
 * over n replicas, a guesser gets n × maxFailures tries per window, still far too few to matter.
 */
export interface LoginThrottle {
  /** Seconds until `key` may try again, or undefined when it may try now. */
  retryAfterSeconds(key: string): number | undefined;
  recordFailure(key: string): void;
  recordSuccess(key: string): void;
  /** Takes back one recorded failure (an attempt counted in advance that turned out right). */
  forgive(key: string): void;
}

export interface LoginThrottleOptions {
  maxFailures?: number;
  windowMs?: number;
  /** Most keys remembered; the oldest windows are forgotten first beyond that. */
  maxKeys?: number;
  now?: () => number;
}

export function createLoginThrottle(options: LoginThrottleOptions = {}): LoginThrottle {
  const { maxFailures = 10, windowMs = 15 * 60_000, maxKeys = 100_000, now = Date.now } = options;
  // Insertion order is window-start order, so the oldest window is always first.
  const windows = new Map<string, { failures: number; startedAt: number }>();

  const current = (key: string) => {
    const window = windows.get(key);
    if (window && now() - window.startedAt >= windowMs) {
      windows.delete(key);
      return undefined;
    }
    return window;
  };

  return {
    retryAfterSeconds(key) {
      const window = current(key);
      if (!window || window.failures < maxFailures) return undefined;
      return Math.max(1, Math.ceil((window.startedAt + windowMs - now()) / 1000));
    },
    recordFailure(key) {
      const window = current(key);
      if (window) {
        window.failures++;
        return;
      }
      if (windows.size >= maxKeys) windows.delete(windows.keys().next().value as string);
      windows.set(key, { failures: 1, startedAt: now() });
    },
    recordSuccess(key) {
      windows.delete(key);
    },
    forgive(key) {
      const window = current(key);
      if (window && window.failures > 0) window.failures--;
    },
  };
}

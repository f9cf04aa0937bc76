import type { FastifyReply } from "fastify";
import { authError } from "./errors.ts";
import { createLoginThrottle, type LoginThrottle, type LoginThrottleOptions } from "./login-throttle.ts";

/**
 * Password guessing, limited two ways: per e-mail and client address (10 failures in 15 minutes:
 * a guesser cannot lock the owner out from elsewhere), and per client address across all e-mails
 * (30 failures in 15 minutes: trying many accounts from one place is stopped too). An attempt is
 * counted before its password is checked, so a burst of concurrent guesses counts in full; one
 * that turns out right is taken back.
 */
export interface PasswordAttempts {
  /** Throws 429 (with Retry-After) when a limit is reached; else counts the attempt. */
  begin(email: string, address: string, reply: FastifyReply): { succeeded(): void };
}

export interface PasswordAttemptOptions {
  perAccount?: LoginThrottleOptions;
  perAddress?: LoginThrottleOptions;
}

export function createPasswordAttempts(options: PasswordAttemptOptions = {}): PasswordAttempts {
  const perAccount: LoginThrottle = createLoginThrottle(options.perAccount);
  const perAddress: LoginThrottle = createLoginThrottle({ maxFailures: 30, ...options.perAddress });
  return {
    begin(email, address, reply) {
      const accountKey = `${email.trim().toLowerCase()} ${address}`;
      const retryAfter = perAccount.retryAfterSeconds(accountKey) ?? perAddress.retryAfterSeconds(address);
      if (retryAfter) {
        reply.header("Retry-After", String(retryAfter));
        throw authError(
          "too_many_attempts",
          `Too many failed password attempts; try again in ${Math.ceil(retryAfter / 60)} minute(s).`,
        );
      }
      perAccount.recordFailure(accountKey);
      perAddress.recordFailure(address);
      return {
        succeeded() {
          perAccount.recordSuccess(accountKey);
          perAddress.forgive(address);
        },
      };
    },
  };
}

import type { HttpError } from "../platform/http.ts";
import type { Logger } from "../platform/logger.ts";
import type { ServiceFetch } from "../platform/service-fetch.ts";
import type { Caller, TokenVerifier } from "./authentication.ts";
import { gatewayError, invalidToken } from "./errors.ts";

/**
 * A signature proves who issued a token, not that it still counts: a password change or a
 * disabled account revokes it (auth's token generation). Auth's `/validate` knows; asking it on
 * every request would cost a hop each, so each token's answer is remembered for `recheckMs`
 * (30 s: revocation takes effect within a minute at most, as documented). A refusal is remembered
 * until the token expires, since a revoked token never comes back. While auth is unreachable a
 * correctly signed token is accepted (an auth outage must not lock every user out) and asked about
 * again after `outageRecheckMs`.
 */
export interface RevocationCheckedVerifier extends TokenVerifier {
  /** Forgets what this replica remembers of a user's tokens (after this replica forwarded a change to the account). */
  forgetUser(userId: string): void;
}

interface Answer {
  until: number;
  userId: string;
  refusal?: HttpError;
}

const MAX_REMEMBERED = 10_000;

export function withRevocationCheck(
  signatureCheck: TokenVerifier,
  authFetch: ServiceFetch,
  options: { logger: Logger; recheckMs?: number; outageRecheckMs?: number },
): RevocationCheckedVerifier {
  const recheckMs = options.recheckMs ?? 30_000;
  const outageRecheckMs = options.outageRecheckMs ?? 10_000;
  const answers = new Map<string, Answer>();
  const asking = new Map<string, Promise<Answer>>();

  async function ask(token: string, caller: Caller): Promise<Answer> {
    const now = Date.now();
    let response: Response;
    try {
      response = await authFetch("/validate", {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
    } catch (error) {
      options.logger.warn(
        { err: error },
        "auth unreachable: accepting a signed token without the revocation check",
      );
      return { until: now + outageRecheckMs, userId: caller.id };
    }
    if (response.status === 200) {
      await response.body?.cancel();
      return { until: now + recheckMs, userId: caller.id };
    }
    if (response.status === 401 || response.status === 403) {
      return { until: Number.POSITIVE_INFINITY, userId: caller.id, refusal: await refusalFrom(response) };
    }
    await response.body?.cancel();
    options.logger.warn(
      { status: response.status },
      "auth answered /validate with an error: accepting a signed token",
    );
    return { until: now + outageRecheckMs, userId: caller.id };
  }

  return {
    async verify(token) {
      const caller = await signatureCheck.verify(token);
      let answer = answers.get(token);
      if (!answer || answer.until <= Date.now()) {
        let pending = asking.get(token);
        if (!pending) {
          pending = ask(token, caller).finally(() => asking.delete(token));
          asking.set(token, pending);
        }
        answer = await pending;
        if (answers.size >= MAX_REMEMBERED) answers.clear();
        answers.set(token, answer);
      }
      if (answer.refusal) throw answer.refusal;
      return caller;
    },
    forgetUser(userId) {
      for (const [token, answer] of answers) if (answer.userId === userId) answers.delete(token);
    },
  };
}

/** Auth's reason (`token_revoked`, `account_disabled`) passed on; anything else is a plain invalid token. */
export async function refusalFrom(response: Response): Promise<HttpError> {
  const body = (await response.json().catch(() => undefined)) as
    | { error?: { code?: unknown; message?: unknown } }
    | undefined;
  const code = body?.error?.code;
  if ((code === "token_revoked" || code === "account_disabled") && typeof body?.error?.message === "string") {
    return gatewayError(code, body.error.message);
  }
  return invalidToken();
}

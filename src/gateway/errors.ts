import { type ErrorCatalogue, errorConstructor } from "../platform/http.ts";
import { errorResponse } from "../platform/openapi.ts";

/**
 * Every error code the gateway answers with itself, its status, and when. Besides these, any
 * service may answer the platform's (`src/platform/http.ts`): `bad_request` for input its schema
 * refuses, `not_found` for an unknown route, `<backend>_unavailable` (503) while a backend is down,
 * `internal`; and the routes forwarded to auth answer auth's codes (`src/auth/errors.ts`).
 */
export const gatewayErrors = {
  bad_request: { status: 400, when: "the upload is not multipart/form-data with exactly one file" },
  invalid_option: { status: 400, when: "an upload's option field is invalid (the message names the field)" },
  field_after_file: { status: 400, when: "an upload's option field came after the file" },
  unauthorized: { status: 401, when: "no token, or an Authorization header that is not Bearer <token>" },
  invalid_token: { status: 403, when: "the token is malformed, invalid or expired" },
  token_revoked: { status: 403, when: "the token was revoked (password changed, account disabled)" },
  account_disabled: { status: 403, when: "the token's account is disabled or no longer exists" },
  link_expired: { status: 403, when: "a signed download link has expired" },
  link_invalid: { status: 403, when: "a signed download link's signature is wrong" },
  not_found: { status: 404, when: "no job or MP3 of the caller's has this id" },
  payload_too_large: { status: 413, when: "the file is larger than MAX_UPLOAD_BYTES" },
  quota_exceeded: { status: 413, when: "the file is larger than what is left of USER_QUOTA_BYTES" },
  unsupported_media_type: {
    status: 415,
    when: "the file is not a video or audio container that can be converted",
  },
  range_not_satisfiable: { status: 416, when: "the byte range lies beyond the MP3" },
  too_many_active_jobs: {
    status: 429,
    when: "MAX_ACTIVE_JOBS_PER_USER of the caller's jobs are queued or converting",
  },
  too_many_streams: { status: 429, when: "the caller has too many event streams open" },
  auth_unavailable: { status: 503, when: "the auth service is not reachable" },
  storage_unavailable: { status: 503, when: "the upload could not be stored" },
  queue_unavailable: { status: 503, when: "the job could not be queued" },
} as const satisfies ErrorCatalogue;

export type GatewayErrorCode = keyof typeof gatewayErrors;

/** `gatewayError("not_found", "No job with this id.")`: an HttpError with the code's status. */
export const gatewayError = errorConstructor(gatewayErrors);

/** The answers given in several places, each worded once. */
export const invalidToken = () =>
  gatewayError("invalid_token", "The token is invalid or has expired; log in again.");
export const authUnavailable = () =>
  gatewayError("auth_unavailable", "The auth service is not reachable; try again shortly.");
export const fileTooLarge = (maxUploadBytes: number) =>
  gatewayError("payload_too_large", `The file is larger than the limit of ${maxUploadBytes} bytes.`);

/** An OpenAPI error answer that names the codes it may carry: "… (`link_expired`, `link_invalid`)". */
export function gatewayErrorResponse(description: string, ...codes: GatewayErrorCode[]) {
  return errorResponse(
    codes.length === 0 ? description : `${description} (${codes.map((c) => `\`${c}\``).join(", ")})`,
  );
}

const TOKEN_REFUSALS: GatewayErrorCode[] = ["invalid_token", "token_revoked", "account_disabled"];

/** The answers of every route that needs a token (see authentication.ts). */
export const tokenErrorResponses = {
  401: gatewayErrorResponse("No token", "unauthorized"),
  403: gatewayErrorResponse("Invalid, expired or revoked token", ...TOKEN_REFUSALS),
} as const;

/** `GET /download`'s 403: the token's refusals, or a signed link's. */
export const downloadRefusedResponse = gatewayErrorResponse(
  "Invalid, expired or revoked token, or signed link",
  ...TOKEN_REFUSALS,
  "link_expired",
  "link_invalid",
);

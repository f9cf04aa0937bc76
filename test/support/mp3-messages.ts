import type { Mp3Message } from "../../src/contracts/messages.ts";

/** The converter's messages about one job of Ada's, as the notification service receives them. */
export const jobId = "3f0c4c1e-8d2a-4a57-9a41-2b7d0d1c9e11";
export const mp3Id = "0b9f1c1e-1111-4a57-9a41-2b7d0d1c9e11";

type ReadyMessage = Extract<Mp3Message, { outcome: "done" }>;
type FailedMessage = Extract<Mp3Message, { outcome: "failed" }>;

/** "holiday.mp4 is converted" (3:25 long), with `overrides`. */
export const readyMessage = (overrides: Partial<ReadyMessage> = {}): ReadyMessage => ({
  version: 1,
  outcome: "done",
  jobId,
  mp3Id,
  fileName: "holiday.mp4",
  email: "ada@example.com",
  durationSeconds: 205.4,
  ...overrides,
});

/** "holiday.mp4 could not be converted: it has no audio track", with `overrides`. */
export const failedMessage = (overrides: Partial<FailedMessage> = {}): FailedMessage => ({
  version: 1,
  outcome: "failed",
  jobId,
  fileName: "holiday.mp4",
  email: "ada@example.com",
  error: "The file has no audio track.",
  ...overrides,
});

import { EventEmitter } from "node:events";
import type { Job } from "./jobs.ts";

/**
 * Job changes fanned out to the owner's open `/events` streams in this process. Listeners are
 * keyed by owner id, so a user only ever hears about their own jobs.
 */
export function createJobFeed() {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
    publish(ownerId: string, job: Job): void {
      emitter.emit(ownerId, job);
    },
    subscribe(ownerId: string, listener: (job: Job) => void): () => void {
      emitter.on(ownerId, listener);
      return () => emitter.off(ownerId, listener);
    },
  };
}

export type JobFeed = ReturnType<typeof createJobFeed>;

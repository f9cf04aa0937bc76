/** At most `size` holders at a time; the others wait in line. */
export interface Limiter {
  acquire(): Promise<void>;
  release(): void;
}

export function createLimiter(size: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    async acquire() {
      if (active < size) {
        active++;
        return;
      }
      // release() hands its slot straight over.
      await new Promise<void>((resolve) => waiting.push(resolve));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else active--;
    },
  };
}

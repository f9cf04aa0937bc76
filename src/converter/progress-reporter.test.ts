import assert from "node:assert/strict";
import { test } from "node:test";
import { createProgressReporter } from "./progress-reporter.ts";

function setup() {
  let clock = 0;
  const published: number[] = [];
  const errors: unknown[] = [];
  const reporter = createProgressReporter({
    publish: async (fraction) => {
      if (fraction === 0.66) throw new Error("broker hiccup");
      published.push(fraction);
    },
    onError: (error) => errors.push(error),
    now: () => clock,
  });
  return { reporter, published, errors, advance: (ms: number) => (clock += ms) };
}

test("publishes at most once a second, and only after a change of at least 1 %", async () => {
  const { reporter, published, advance } = setup();
  reporter.update(0, 10); // nothing new: the job is known to have started
  reporter.update(0.2, 10); // first real progress goes out at once
  advance(500);
  reporter.update(0.3, 10); // too soon
  advance(600);
  reporter.update(0.205, 10); // a second later, but less than 1 % more than last published
  reporter.update(0.4, 10);
  advance(1000);
  reporter.update(1, 10);
  await reporter.settled();
  assert.deepEqual(published, [0.2, 0.4, 1]);
});

test("a failed publish is reported and does not stop later ones", async () => {
  const { reporter, published, errors, advance } = setup();
  reporter.update(0.66, 10);
  advance(1000);
  reporter.update(0.9, 10);
  await reporter.settled();
  assert.deepEqual(published, [0.9]);
  assert.equal(errors.length, 1);
});

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Headless Chromium as the browser tests use it: no sandbox (containers), nothing phoning home. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export interface PageProblems {
  /** Console errors and uncaught exceptions not explained by an expected failed request. */
  unexpected: string[];
}

/** Collects a page's console errors and uncaught exceptions, but for answers with `allowedStatuses`. */
export function watchProblems(page: Page, allowedStatuses: number[] = []): PageProblems {
  const problems: PageProblems = { unexpected: [] };
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    // Chromium logs every 4xx answer to fetch as "Failed to load resource"; the expected ones are fine.
    const status = /status of (\d{3})/.exec(message.text())?.[1];
    if (status && allowedStatuses.includes(Number(status))) return;
    problems.unexpected.push(`${message.text()} (${message.location().url})`);
  });
  page.on("pageerror", (error) => problems.unexpected.push(`uncaught: ${error.message}`));
  return problems;
}

/** Fills and sends the sign-in form. */
export async function signIn(page: Page, email: string, password: string, keep = false): Promise<void> {
  const form = page.locator("#signin-view");
  await form.getByLabel("E-mail").fill(email);
  await form.getByLabel("Password").fill(password);
  if (keep) await form.getByLabel("Keep me signed in").check();
  await form.getByRole("button", { name: "Sign in" }).click();
}

const axeSource = readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * axe-core's violations on the page as it is now (WCAG 2.x A and AA, and axe's best practices),
 * one line each: the rule, and the elements with what is wrong.
 */
export async function axeViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate("typeof window.axe !== 'undefined'"))) await page.evaluate(await axeSource);
  const violations = (await page.evaluate(
    `axe.run(document, { resultTypes: ["violations"] }).then((result) => result.violations.map((v) => ({
      id: v.id,
      nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary.replace(/\\s+/g, " ")),
    })))`,
  )) as { id: string; nodes: string[] }[];
  return violations.map((violation) => `${violation.id}: ${violation.nodes.join(" | ")}`);
}

/** A fresh browser profile with downloads allowed. */
export async function newContext(
  browser: Browser,
  viewport = { width: 1100, height: 900 },
): Promise<BrowserContext> {
  return browser.newContext({ acceptDownloads: true, viewport });
}

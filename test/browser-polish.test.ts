import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { unzipSync } from "fflate";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { axeViolations, launchChromium, newContext, signIn, watchProblems } from "./support/browser.ts";
import { gatewayClient } from "./support/client.ts";
import { makeVideo } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const CAROL = { email: "carol@example.com", password: "carol-password-1" };
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1100, height: 900 };

/**
 * The elements that stick out of the screen sideways (or out of a box that clips them), and
 * whether the page scrolls sideways at all: nothing, on a phone.
 */
async function outOfScreen(page: Page): Promise<string[]> {
  return (await page.evaluate(`(() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > width) out.push("the page scrolls sideways");
    for (const element of document.querySelectorAll("body *")) {
      const box = element.getBoundingClientRect();
      if (box.width === 0 || element.closest(".visually-hidden, dialog:not([open]), .skip-link")) continue;
      const clip = element.parentElement?.closest(".table-wrap")?.getBoundingClientRect() ?? { left: 0, right: width };
      if (box.left < clip.left - 0.5 || box.right > clip.right + 0.5)
        out.push(element.tagName + "." + element.className + " " + box.left + "–" + box.right);
    }
    return out;
  })()`)) as string[];
}

/**
 * The page's accounts, bulk actions, outage banner, phone layout and accessibility, in real
 * headless Chromium against the whole system as a real process with registration open.
 */
describe("the browser UI: accounts, bulk actions, phone, accessibility", () => {
  let dir: string;
  let server: RunningServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const media = (name: string) => path.join(dir, name);
  const text = async (locator: Locator) => ((await locator.textContent()) ?? "").trim();
  const env = () => ({
    DATA_DIR: path.join(dir, "data"),
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    REGISTRATION: "open",
  });

  async function open(viewport = DESKTOP): Promise<{ page: Page; context: BrowserContext }> {
    const context = await newContext(browser, viewport);
    contexts.push(context);
    return { context, page: await context.newPage() };
  }

  async function signedIn(email: string, password: string, viewport = DESKTOP): Promise<Page> {
    const { page } = await open(viewport);
    await page.goto(server.url);
    await signIn(page, email, password);
    await page.locator('#connection[data-state="live"]').waitFor();
    return page;
  }

  /** Jobs of a user, made through the API (the tests here are about the page, not the upload). */
  async function convert(email: string, password: string, files: string[]): Promise<string[]> {
    const api = gatewayClient(server.url);
    const token = await api.token(email, password);
    const ids: string[] = [];
    for (const file of files) {
      const accepted = (await (await api.upload(token, media(file))).json()) as { jobId: string };
      await api.waitForJob(token, accepted.jobId, 60_000);
      ids.push(accepted.jobId);
    }
    return ids;
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-browser-polish-"));
    await Promise.all([
      makeVideo(media("holiday.mp4"), { seconds: 2 }),
      makeVideo(media("a-rather-long-name-for-a-summer-holiday-video-2026.mp4"), { seconds: 1 }),
      makeVideo(media("silent.mp4"), { seconds: 1, audio: false }),
      writeFile(media("notes.mp4"), "these are my notes, not a video\n".repeat(200)),
    ]);
    server = await startServer(env());
    browser = await launchChromium();
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("offers a sign-up form when registration is open, and signs the new account in", async () => {
    const { page } = await open();
    const problems = watchProblems(page);
    await page.goto(server.url);
    await page.getByRole("button", { name: "Create one" }).click();
    const form = page.locator("#signup-view");
    await form.getByRole("heading", { level: 1, name: "Create an account" }).waitFor();
    await form.getByLabel("E-mail").fill(CAROL.email);
    await form.getByLabel("Password", { exact: true }).fill(CAROL.password);
    await form.getByLabel("Repeat the password").fill("something-else");
    await form.getByRole("button", { name: "Create account" }).click();
    assert.match(await text(form.getByRole("alert")), /differ/);
    await form.getByLabel("Repeat the password").fill(CAROL.password);
    await form.getByRole("button", { name: "Create account" }).click();
    await page.locator("#app-view").waitFor();
    assert.equal(await text(page.locator("#account-email")), CAROL.email);
    assert.deepEqual(problems.unexpected, []);
  });

  it("keeps me signed in across tabs when asked, until I sign out or the token expires", async () => {
    // Without "keep me signed in" a new tab asks again.
    const { context: once } = await open();
    const first = await once.newPage();
    await first.goto(server.url);
    await signIn(first, CAROL.email, CAROL.password);
    await first.locator("#app-view").waitFor();
    const second = await once.newPage();
    await second.goto(server.url);
    await second.locator("#signin-view").waitFor();

    // With it, every tab of the browser is signed in, and signing out in one signs out all.
    const { context } = await open();
    const a = await context.newPage();
    await a.goto(server.url);
    await signIn(a, CAROL.email, CAROL.password, true);
    await a.locator("#app-view").waitFor();
    const b = await context.newPage();
    await b.goto(`${server.url}/`);
    await b.locator("#app-view").waitFor();
    assert.equal(await text(b.locator("#account-email")), CAROL.email);
    await a.locator("#account-button").click();
    await a.getByRole("button", { name: "Sign out" }).click();
    await b.locator("#signin-view").waitFor();
    assert.match(await text(b.locator("#signin-notice")), /signed out in another tab/);

    // A kept token past its expiry is not used: the page asks to sign in.
    await signIn(a, CAROL.email, CAROL.password, true);
    await a.locator("#app-view").waitFor();
    await a.evaluate(`{
      const token = localStorage.getItem("vid2mp3.token");
      const [head, payload, signature] = token.split(".");
      const claims = JSON.parse(atob(payload.replaceAll("-", "+").replaceAll("_", "/")));
      claims.exp = Math.floor(Date.now() / 1000) - 60;
      const encoded = btoa(JSON.stringify(claims)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
      localStorage.setItem("vid2mp3.token", [head, encoded, signature].join("."));
    }`);
    const c = await context.newPage();
    await c.goto(server.url);
    await c.locator("#signin-view").waitFor();
    assert.equal(
      await c.evaluate(`localStorage.getItem("vid2mp3.token")`),
      null,
      "the expired token is forgotten",
    );
  });

  it("retries a failed upload, and names each upload's buttons after its file", async () => {
    const page = await signedIn(CAROL.email, CAROL.password);
    // The first attempt breaks off as a dropped connection does; the retry goes through.
    // The first attempt is held until its Cancel button has been looked at.
    let refused = 0;
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route("**/upload", async (route) => {
      if (refused++ === 0) {
        await held;
        await route.abort("connectionreset");
      } else await route.continue();
    });
    await page.locator("#file-input").setInputFiles(media("holiday.mp4"));
    // Under way, its Cancel is told apart from every other upload's.
    await page.getByRole("button", { name: "Cancel the upload of holiday.mp4", exact: true }).waitFor();
    release();
    const failed = page.locator('#uploads .upload[data-state="error"]');
    await failed.waitFor();
    assert.match(await text(failed.getByRole("alert")), /connection dropped/);
    assert.ok(await failed.getByRole("button", { name: "Dismiss holiday.mp4" }).isVisible());
    await failed.getByRole("button", { name: "Retry holiday.mp4" }).click();
    await page
      .locator('#jobs li.job[data-status="done"]', { hasText: "holiday.mp3" })
      .waitFor({ timeout: 60_000 });
    assert.equal(await page.locator("#uploads .upload").count(), 0);
    assert.equal(refused, 2);
  });

  it("names each MP3 in the list, and selects jobs in bulk to download as one ZIP or delete", async () => {
    await convert(CAROL.email, CAROL.password, ["holiday.mp4", "silent.mp4"]);
    const page = await signedIn(CAROL.email, CAROL.password);
    const rows = page.locator("#jobs li.job");
    await rows.nth(2).waitFor();
    const names = await rows.locator(".job-name").allTextContents();
    assert.deepEqual(names, ["silent.mp3", "holiday.mp3", "holiday.mp3"]);
    assert.match(await text(rows.first().locator(".job-meta")), /from silent\.mp4/);
    // A done job shows its MP3's size (as the API gives it), not the video's.
    const api = gatewayClient(server.url);
    const listed = (await (await api.jobs(await api.token(CAROL.email, CAROL.password))).json()) as {
      jobs: { id: string; mp3Size: number | null }[];
    };
    for (const job of listed.jobs.filter((each) => each.mp3Size !== null)) {
      const meta = await text(page.locator(`#jobs li.job[data-id="${job.id}"] .job-meta`));
      const shown = /^([\d.]+) (bytes|KB|MB) · from holiday\.mp4/.exec(meta);
      assert.ok(shown, meta);
      const bytes = Number(shown[1]) * 1000 ** ["bytes", "KB", "MB"].indexOf(shown[2] ?? "");
      const mp3Size = job.mp3Size ?? 0;
      assert.ok(Math.abs(bytes - mp3Size) <= mp3Size * 0.05, `${meta}: the MP3 has ${mp3Size} bytes`);
    }

    const bulk = page.locator("#bulk");
    assert.equal(await bulk.getByRole("button", { name: "Download as ZIP" }).isDisabled(), true);
    await bulk.getByLabel("Select all").check();
    assert.match(await text(page.locator("#selected-count")), /3 selected/);
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      bulk.getByRole("button", { name: "Download as ZIP" }).click(),
    ]);
    assert.match(download.suggestedFilename(), /^vid2mp3-\d{4}-\d{2}-\d{2}\.zip$/);
    const saved = media("all.zip");
    await download.saveAs(saved);
    const entries = unzipSync(new Uint8Array(await readFile(saved)));
    // The failed job has no MP3; the two of the same name are told apart.
    assert.deepEqual(Object.keys(entries).sort(), ["holiday (2).mp3", "holiday.mp3"]);
    for (const bytes of Object.values(entries)) assert.ok(bytes.length > 1000);

    await rows.first().getByRole("checkbox", { name: "Select silent.mp3" }).uncheck();
    assert.match(await text(page.locator("#selected-count")), /2 selected/);
    await bulk.getByRole("button", { name: "Delete" }).click();
    const dialog = page.getByRole("dialog");
    assert.match(await text(dialog.getByRole("heading")), /Delete 2 files\?/);
    await dialog.getByRole("button", { name: "Delete" }).click();
    await rows.nth(1).waitFor({ state: "detached" });
    assert.deepEqual(await rows.locator(".job-name").allTextContents(), ["silent.mp3"]);
    assert.match(await text(page.locator("#jobs-count")), /^1 file$/);
  });

  it("shows the users on a view of their own, where an admin sets a new password and disables an account", async () => {
    const page = await signedIn(ADMIN.email, ADMIN.password);
    assert.equal(await page.locator("#users-view").isVisible(), false, "not below the jobs");
    await page.getByRole("link", { name: "Users" }).click();
    await page.locator("#users-view").waitFor();
    assert.equal(await page.locator("#files-view").isVisible(), false);
    assert.equal(await page.getByRole("link", { name: "Users" }).getAttribute("aria-current"), "page");
    assert.match(page.url(), /#users$/);

    const row = page.locator("#users tr", { hasText: CAROL.email });
    await row.getByRole("button", { name: `Set a new password for ${CAROL.email}` }).click();
    const dialog = page.locator("#password-dialog");
    await dialog.getByRole("heading", { name: `Set a new password for ${CAROL.email}` }).waitFor();
    assert.equal(await dialog.getByLabel("Current password").isVisible(), false);
    await dialog.getByLabel("New password", { exact: true }).fill("carol-password-2");
    await dialog.getByLabel("Repeat the new password").fill("carol-password-2");
    await dialog.getByRole("button", { name: "Set password" }).click();
    await dialog.waitFor({ state: "hidden" });
    const api = gatewayClient(server.url);
    assert.equal((await api.login(CAROL.email, CAROL.password)).status, 401);
    assert.equal((await api.login(CAROL.email, "carol-password-2")).status, 200);
    CAROL.password = "carol-password-2";

    await row.getByRole("button", { name: `Disable ${CAROL.email}` }).click();
    await row.getByRole("button", { name: `Enable ${CAROL.email}` }).waitFor();
    assert.equal((await api.login(CAROL.email, CAROL.password)).status, 401);
    await row.getByRole("button", { name: `Enable ${CAROL.email}` }).click();
    await row.getByRole("button", { name: `Disable ${CAROL.email}` }).waitFor();
    assert.equal((await api.login(CAROL.email, CAROL.password)).status, 200);

    await page.getByRole("link", { name: "Files" }).click();
    await page.locator("#files-view").waitFor();
    assert.equal(await page.locator("#users-view").isVisible(), false);
  });

  it("changes the password from the account menu, and stays signed in", async () => {
    const page = await signedIn(CAROL.email, CAROL.password);
    await page.getByRole("button", { name: new RegExp(CAROL.email) }).click();
    await page.getByRole("button", { name: "Change password" }).click();
    const dialog = page.locator("#password-dialog");
    await dialog.getByRole("heading", { name: "Change your password" }).waitFor();
    await dialog.getByLabel("Current password").fill("not-my-password");
    await dialog.getByLabel("New password", { exact: true }).fill("carol-password-3");
    await dialog.getByLabel("Repeat the new password").fill("carol-password-3");
    await dialog.getByRole("button", { name: "Change password" }).click();
    assert.match(await text(dialog.getByRole("alert")), /current password/i);
    assert.equal(await dialog.getByLabel("Current password").getAttribute("aria-invalid"), "true");

    await dialog.getByLabel("Current password").fill(CAROL.password);
    await dialog.getByRole("button", { name: "Change password" }).click();
    await dialog.waitFor({ state: "hidden" });
    CAROL.password = "carol-password-3";
    const api = gatewayClient(server.url);
    assert.equal((await api.login(CAROL.email, "carol-password-2")).status, 401);
    assert.equal((await api.login(CAROL.email, CAROL.password)).status, 200);
    // Still signed in, with a token of the new password: the page goes on working.
    await page.reload();
    await page.locator("#app-view").waitFor();
    await page.locator('#connection[data-state="live"]').waitFor();
  });

  it("fits a 390 px phone: nothing sticks out, and a touch screen is not told to drop files", async () => {
    await convert(CAROL.email, CAROL.password, ["a-rather-long-name-for-a-summer-holiday-video-2026.mp4"]);
    const { context } = await open(PHONE);
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send("Emulation.setTouchEmulationEnabled", { enabled: true, maxTouchPoints: 5 });
    // The newest job (the long name) shown as a conversion under way, with its percentage.
    await page.route(
      (url) => url.pathname === "/jobs",
      async (route) => {
        const response = await route.fetch();
        const body = (await response.json()) as { jobs: Record<string, unknown>[] };
        body.jobs[0] = { ...body.jobs[0], status: "converting", progress: 0.57, mp3Id: null, mp3Size: null };
        await route.fulfill({ response, json: body });
      },
    );
    await page.goto(server.url);
    assert.equal(await page.evaluate(`matchMedia("(pointer: coarse)").matches`), true, "a touch screen");
    await signIn(page, CAROL.email, CAROL.password);
    await page.locator("#jobs li.job").first().waitFor();
    const converting = page.locator('#jobs li.job[data-status="converting"]');
    assert.equal(await text(converting.locator(".job-percent")), "57%");
    const card = await converting.boundingBox();
    const percent = await converting.locator(".job-percent").boundingBox();
    assert.ok(
      card && percent && percent.x + percent.width <= card.x + card.width,
      `the percentage stays inside its card (${JSON.stringify({ card, percent })})`,
    );
    await page.locator("#file-input").setInputFiles(media("notes.mp4"));
    await page.locator('#uploads .upload[data-state="error"]').waitFor();

    assert.deepEqual(await outOfScreen(page), [], "every element within the screen");
    const brand = await page.locator(".brand").boundingBox();
    assert.ok(brand && brand.x >= 12, `the logo keeps its distance from the edge (x=${brand?.x})`);
    const topbar = await page.locator(".topbar").boundingBox();
    assert.ok(topbar && topbar.height <= 72, `the top bar stays one row (${topbar?.height} px)`);
    assert.ok(await page.getByText("Choose videos").isVisible());
    assert.equal(await page.getByText("Drop videos here").isVisible(), false);

    const shots = process.env.VID2MP3_SCREENSHOT_DIR ?? path.join(dir, "screenshots");
    await mkdir(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, "phone.png"), fullPage: true });
  });

  it("has no axe violation on any view, on desktop and phone, light and dark", async () => {
    // The admin's list with a job of each kind: done, failed, and (as the list is shown) one converting.
    const [, done] = await convert(ADMIN.email, ADMIN.password, ["silent.mp4", "holiday.mp4", "holiday.mp4"]);
    const api = gatewayClient(server.url);
    const { mp3Id } = (await (
      await api.job(await api.token(ADMIN.email, ADMIN.password), String(done))
    ).json()) as { mp3Id: string };
    const found: string[] = [];
    for (const viewport of [DESKTOP, PHONE]) {
      for (const colorScheme of ["light", "dark"] as const) {
        const { page } = await open(viewport);
        await page.emulateMedia({ colorScheme });
        await page.route(
          (url) => url.pathname === "/jobs",
          async (route) => {
            const response = await route.fetch();
            const body = (await response.json()) as { jobs: Record<string, unknown>[] };
            if (body.jobs[0]) body.jobs[0] = { ...body.jobs[0], status: "converting", progress: 0.42 };
            await route.fulfill({ response, json: body });
          },
        );
        const check = async (view: string) => {
          assert.equal(await page.locator("h1:visible").count(), 1, `${view}: one h1`);
          if (viewport === PHONE) {
            for (const element of await outOfScreen(page))
              found.push(`phone ${view}: out of the screen: ${element}`);
          }
          for (const violation of await axeViolations(page)) {
            found.push(`${viewport.width}px ${colorScheme} ${view}: ${violation}`);
          }
        };
        // Through the mail's link, so the files view also offers that MP3.
        await page.goto(`${server.url}/?fid=${mp3Id}`);
        await page.locator("#signin-view").waitFor();
        await signIn(page, CAROL.email, "wrong-password");
        await page.locator("#signin-error").waitFor();
        await check("sign-in with an error");
        await page.getByRole("button", { name: "Create one" }).click();
        await check("sign-up");
        await page.getByRole("button", { name: "Sign in" }).last().click();
        await signIn(page, ADMIN.email, ADMIN.password);
        await page.locator('#connection[data-state="live"]').waitFor();
        await page.locator("#file-input").setInputFiles(media("notes.mp4"));
        await page.locator('#uploads .upload[data-state="error"]').waitFor();
        await page.locator('#jobs li.job[data-status="converting"]').waitFor();
        await page.locator('#jobs li.job[data-status="failed"]').waitFor();
        await page.getByRole("button", { name: "Download MP3" }).waitFor();
        await check("files");
        await page.getByRole("button", { name: "Delete silent.mp3" }).click();
        await page.locator("#confirm").getByRole("button", { name: "Keep it" }).waitFor();
        await check("delete confirmation");
        await page.locator("#confirm").getByRole("button", { name: "Keep it" }).click();
        await page.locator("#account-button").click();
        await check("account menu");
        await page.getByRole("button", { name: "Change password" }).click();
        await check("change password");
        await page.locator("#password-dialog").getByRole("button", { name: "Cancel" }).click();
        await page.getByRole("link", { name: "Users" }).click();
        await page.locator("#users tr").first().waitFor();
        await check("users");
        await page.getByRole("button", { name: `Set a new password for ${CAROL.email}` }).click();
        await check("set a new password");
        await page.locator("#password-dialog").getByRole("button", { name: "Cancel" }).click();
      }
    }
    assert.deepEqual(found, []);
  });

  it("shows a clear banner while the server is unreachable (desktop and phone, light and dark, no axe violation), and drops it once the server is back", async () => {
    // The earlier tests' pages are closed first: each holds one of the user's 10 event streams.
    for (const context of contexts.splice(0)) await context.close();
    // On desktop and phone, light and dark: the banner has no axe violation and fits the screen.
    const pages: { page: Page; label: string; phone: boolean }[] = [];
    for (const viewport of [DESKTOP, PHONE]) {
      for (const colorScheme of ["light", "dark"] as const) {
        const page = await signedIn(CAROL.email, CAROL.password, viewport);
        await page.emulateMedia({ colorScheme });
        pages.push({ page, label: `${viewport.width}px ${colorScheme}`, phone: viewport === PHONE });
      }
    }
    const banner = (page: Page) =>
      page.getByRole("alert").filter({ hasText: "The server cannot be reached" });
    for (const { page } of pages) assert.equal(await banner(page).isVisible(), false);
    const port = new URL(server.url).port;
    await server.stop();
    const found: string[] = [];
    for (const { page, label, phone } of pages) {
      await banner(page).waitFor({ timeout: 30_000 });
      for (const violation of await axeViolations(page)) found.push(`${label}: ${violation}`);
      if (phone)
        for (const element of await outOfScreen(page)) found.push(`${label}: out of the screen: ${element}`);
    }
    assert.deepEqual(found, []);
    // Back on the same address, with the same data.
    server = await startServer({ ...env(), PORT: port });
    for (const { page } of pages) {
      await banner(page).waitFor({ state: "hidden", timeout: 60_000 });
      await page.locator('#connection[data-state="live"]').waitFor();
    }
  });
});

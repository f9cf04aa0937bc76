import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { QUALITIES } from "../src/contracts/options.ts";
import { launchChromium, newContext, type PageProblems, signIn, watchProblems } from "./support/browser.ts";
import { audioDuration, decodedSeconds, makeVideo, mp3Details } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const BOB = { email: "bob@example.com", password: "bob-password-1" };

/**
 * Runs in the page (a string: the tests are type-checked without the DOM library). Records what
 * the page shows: every value of an upload bar and every status of a job row, and leaves a marker
 * that a reload would wipe.
 */
const RECORD_CHANGES = `{
  const seen = { progress: [], statuses: [], marker: "still-here" };
  window.seen = seen;
  const status = (element) => element.getAttribute("data-id") + ":" + element.getAttribute("data-status");
  new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target;
      if (record.type === "attributes" && target.matches("progress.upload-progress"))
        seen.progress.push(Number(target.getAttribute("value")));
      if (record.type === "attributes" && target.matches("li.job")) seen.statuses.push(status(target));
      for (const node of record.addedNodes)
        if (node instanceof Element && node.matches("li.job")) seen.statuses.push(status(node));
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["value", "data-status"] });
}`;

/** Polls `check` (every 50 ms, up to 20 s) until it answers something. */
async function until<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Bytes as the page shows them (dom.js formatBytes), for an MP3 of some kilobytes. */
const formatKilobytes = (bytes: number): string => {
  const value = bytes / 1000;
  return `${value.toFixed(value >= 100 ? 0 : 1)} KB`;
};

interface Seen {
  progress: number[];
  statuses: string[];
  marker: string;
}

/**
 * The browser UI in real headless Chromium against the whole system as a real process: sign-in,
 * upload with progress, live conversion over SSE, download, delete, the mail's deep link, and the
 * admins' users panel.
 */
describe("the browser UI (headless Chromium)", () => {
  let dir: string;
  let server: RunningServer;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const media = (name: string) => path.join(dir, name);

  /** A fresh browser profile (its own sessionStorage), console errors collected. */
  async function openPage(allowedStatuses: number[] = []): Promise<{ page: Page; problems: PageProblems }> {
    const context = await newContext(browser);
    contexts.push(context);
    const page = await context.newPage();
    return { page, problems: watchProblems(page, allowedStatuses) };
  }

  const text = async (locator: Locator) => ((await locator.textContent()) ?? "").trim();
  const tokenOf = (page: Page) => page.evaluate(() => sessionStorage.getItem("vid2mp3.token"));
  const api = (token: string, route: string, init: RequestInit = {}) =>
    fetch(`${server.url}${route}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-browser-"));
    await Promise.all([
      makeVideo(media("holiday.mp4"), { seconds: 3 }),
      makeVideo(media("clip.webm"), { seconds: 2 }),
      writeFile(media("notes.mp4"), "these are my notes, not a video\n".repeat(200)),
    ]);
    server = await startServer({
      DATA_DIR: path.join(dir, "data"),
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    browser = await launchChromium();
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    const code = await server?.stop();
    assert.equal(code, 0, `graceful shutdown exits 0\n${server?.output()}`);
    await rm(dir, { recursive: true, force: true });
  });

  it("serves the page and its assets with a strict Content-Security-Policy and cache headers", async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(String(page.headers.get("content-type")), /^text\/html/);
    const csp = String(page.headers.get("content-security-policy"));
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff");
    assert.equal(page.headers.get("referrer-policy"), "no-referrer");
    assert.equal(page.headers.get("cache-control"), "no-cache");
    const html = await page.text();
    assert.doesNotMatch(
      html,
      /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i,
      "no inline script or style",
    );

    const script = /src="(\/assets\/[^/"]+\/app\.js)"/.exec(html)?.[1];
    assert.ok(script, "the page names its script under a versioned path");
    const asset = await fetch(`${server.url}${script}`);
    assert.equal(asset.status, 200);
    assert.match(String(asset.headers.get("content-type")), /javascript/);
    assert.match(String(asset.headers.get("cache-control")), /immutable/);
    assert.ok(asset.headers.get("content-security-policy"));

    // The UI shadows no API route and no API 404.
    assert.equal((await fetch(`${server.url}/jobs`)).status, 401);
    const unknown = await fetch(`${server.url}/no-such-page`);
    assert.equal(unknown.status, 404);
    assert.ok(((await unknown.json()) as { error?: unknown }).error);
  });

  describe("an administrator's session", () => {
    let page: Page;
    let problems: PageProblems;
    let token: string;
    const jobIds = new Map<string, string>();

    before(async () => {
      ({ page, problems } = await openPage([400, 401, 415]));
    });

    it("refuses a wrong password with a clear message, then signs in", async () => {
      const response = await page.goto(server.url);
      assert.ok(response?.headers()["content-security-policy"]?.includes("default-src 'self'"));
      await page.getByRole("heading", { name: "Sign in" }).waitFor();

      await signIn(page, ADMIN.email, "not-the-password");
      const error = page.locator("#signin-error");
      await error.waitFor();
      assert.match(await text(error), /wrong e-mail or password/i);
      assert.equal(await page.locator("#app-view").isVisible(), false);

      await signIn(page, ADMIN.email, ADMIN.password);
      await page.locator("#app-view").waitFor();
      assert.equal(await text(page.locator("#account-email")), ADMIN.email);
      assert.ok(await page.locator("#account-admin").isVisible(), "the admin badge");
      await page.locator('#connection[data-state="live"]').waitFor();
      token = String(await tokenOf(page));
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      await page.getByText("Nothing here yet").waitFor();
    });

    it("uploads two videos with upload progress, and the jobs reach done live, without a reload", async () => {
      // A slow line, so the upload's progress is visible on the way (about 64 KB/s).
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 20,
        downloadThroughput: -1,
        uploadThroughput: 64 * 1024,
      });
      // Record what the page shows: upload bars' values and each job row's status changes.
      await page.evaluate(RECORD_CHANGES);
      let jobListRequests = 0;
      page.on("request", (request) => {
        if (new URL(request.url()).pathname === "/jobs") jobListRequests += 1;
      });

      await page.locator("#file-input").setInputFiles([media("holiday.mp4"), media("clip.webm")]);
      await page.locator("#uploads .upload").first().waitFor();
      const done = page.locator('#jobs li.job[data-status="done"]');
      await done.nth(1).waitFor({ timeout: 60_000 });
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false,
        latency: 0,
        downloadThroughput: -1,
        uploadThroughput: -1,
      });
      await cdp.detach();

      const seen = (await page.evaluate("window.seen")) as Seen;
      assert.equal(seen.marker, "still-here", "the page was never reloaded");
      assert.equal(jobListRequests, 0, "no polling: the updates came over /events");
      assert.ok(
        seen.progress.some((value) => value > 0 && value < 100),
        `the upload bar moved on the way: ${seen.progress.join(", ")}`,
      );
      assert.ok(seen.progress.includes(100), "and reached the end");
      assert.equal(await page.locator("#uploads .upload").count(), 0, "finished uploads turn into jobs");

      for (const li of await page.locator("#jobs li.job").all()) {
        const name = await text(li.locator(".job-name"));
        jobIds.set(name, String(await li.getAttribute("data-id")));
        assert.equal(await text(li.locator(".pill")), "Done");
        assert.match(await text(li.locator(".job-expires")), /expires \S/, "a done job says when it expires");
        assert.ok(await li.getByRole("button", { name: `Download ${name}`, exact: true }).isVisible());
      }
      // The list names the MP3s (and says which video each came from).
      assert.deepEqual([...jobIds.keys()].sort(), ["clip.mp3", "holiday.mp3"]);
      assert.match(
        await text(page.locator(`#jobs li[data-id="${jobIds.get("clip.mp3")}"] .job-meta`)),
        /from clip\.webm/,
      );
      // Newest first: the second file was uploaded last.
      assert.equal(await text(page.locator("#jobs li.job .job-name").first()), "clip.mp3");
      for (const [name, id] of jobIds) {
        const statuses = seen.statuses
          .filter((entry) => entry.startsWith(`${id}:`))
          .map((e) => e.split(":")[1]);
        assert.equal(statuses.at(-1), "done", `${name}: ${statuses.join(" → ")}`);
        assert.ok(
          statuses.length >= 2,
          `${name} changed on screen while converting: ${statuses.join(" → ")}`,
        );
      }
      assert.match(await text(page.locator("#jobs-count")), /2 files/);

      const shots = process.env.VID2MP3_SCREENSHOT_DIR ?? path.join(dir, "screenshots");
      await mkdir(shots, { recursive: true });
      await page.screenshot({ path: path.join(shots, "main.png"), fullPage: true });
    });

    it("downloads the MP3 under its file name, with the video's length", async () => {
      const row = page.locator(`#jobs li[data-id="${jobIds.get("holiday.mp3")}"]`);
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        row.getByRole("button", { name: /Download/ }).click(),
      ]);
      assert.equal(download.suggestedFilename(), "holiday.mp3");
      const saved = media("downloaded.mp3");
      await download.saveAs(saved);
      const [source, mp3] = await Promise.all([audioDuration(media("holiday.mp4")), audioDuration(saved)]);
      assert.ok(Math.abs(source - mp3) <= 0.15, `MP3 lasts ${mp3} s, the video ${source} s`);
    });

    it("deletes a job after confirmation", async () => {
      const id = String(jobIds.get("clip.mp3"));
      const row = page.locator(`#jobs li[data-id="${id}"]`);
      await row.getByRole("button", { name: "Delete clip.mp3" }).click();
      const dialog = page.getByRole("dialog");
      await dialog.waitFor();
      assert.match(await text(dialog), /clip\.mp3/);
      await dialog.getByRole("button", { name: "Keep it" }).click();
      assert.equal(await row.count(), 1, "keeping it keeps it");

      await row.getByRole("button", { name: "Delete clip.mp3" }).click();
      await dialog.getByRole("button", { name: "Delete" }).click();
      await row.waitFor({ state: "detached" });
      assert.equal((await api(token, `/jobs/${id}`)).status, 404);
      assert.match(await text(page.locator("#jobs-count")), /1 file\b/);
    });

    it("takes a dropped file, and explains a refused one", async () => {
      // A drop as the browser makes it: a DataTransfer holding a File, dispatched on the drop zone.
      const bytes = (await readFile(media("holiday.mp4"))).toString("base64");
      const dataTransfer = await page.evaluateHandle(`(() => {
        const bytes = Uint8Array.from(atob("${bytes}"), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.mp4", { type: "video/mp4" }));
        return transfer;
      })()`);
      const zone = page.locator("#dropzone .dropzone-label");
      await zone.dispatchEvent("dragenter", { dataTransfer });
      await zone.dispatchEvent("dragover", { dataTransfer });
      await zone.dispatchEvent("drop", { dataTransfer });
      await page
        .locator("#jobs li.job", { hasText: "dropped.mp4" })
        .and(page.locator('[data-status="done"]'))
        .waitFor();
      assert.match(await text(page.locator("#jobs-count")), /2 files/);

      await page.locator("#file-input").setInputFiles(media("notes.mp4"));
      const refused = page.locator('#uploads .upload[data-state="error"]');
      await refused.waitFor();
      assert.match(await text(refused.getByRole("alert")), /not a video or audio/);
      await refused.getByRole("button", { name: "Dismiss" }).click();
      await refused.waitFor({ state: "detached" });
      assert.match(await text(page.locator("#jobs-count")), /2 files/, "no job for a refused file");
    });

    it("applies the MP3 options beside the drop zone, remembers them, and plays the MP3 in the page", async () => {
      const options = page.locator("#options-form");
      assert.match(await text(options.locator("#options-summary")), /^Defaults/);
      // Every quality of the contract, in its order, and no other.
      assert.deepEqual(
        await options
          .getByLabel("Quality")
          .locator("option")
          .evaluateAll((items) => items.map((item) => item.getAttribute("value"))),
        [...QUALITIES],
      );
      // A value the server would refuse is caught before anything is sent.
      await options.getByLabel("End").fill("1:75");
      assert.match(await text(options.getByRole("alert")), /End: use seconds/);
      await page.locator("#file-input").setInputFiles(media("holiday.mp4"));
      assert.equal(await page.locator("#uploads .upload").count(), 0, "nothing uploaded");
      assert.equal(await options.getByLabel("End").getAttribute("aria-invalid"), "true");
      // A range backwards is caught too.
      await options.getByLabel("Start").fill("2:30");
      await options.getByLabel("End").fill("1:00");
      assert.match(await text(options.getByRole("alert")), /End: must come after the start/);
      // What only the server refuses (a start past its 100-hour bound) is its 400, naming the field, shown on the upload.
      await options.getByLabel("End").fill("");
      await options.getByLabel("Start").fill("999999");
      assert.equal(await options.getByRole("alert").isVisible(), false);
      const jobsBefore = await text(page.locator("#jobs-count"));
      await page.locator("#file-input").setInputFiles(media("holiday.mp4"));
      const refused = page.locator('#uploads .upload[data-state="error"]');
      await refused.waitFor();
      assert.match(await text(refused.getByRole("alert")), /The field "start" must be a time/);
      await refused.getByRole("button", { name: "Dismiss" }).click();
      await refused.waitFor({ state: "detached" });
      assert.equal(await text(page.locator("#jobs-count")), jobsBefore, "no job for a refused option");

      await options.getByLabel("Quality").selectOption("128k");
      await options.getByLabel("Start").fill("0:01");
      await options.getByLabel("End").fill("2");
      await options.getByLabel("Mono").check();
      await options.getByLabel("Cover picture").uncheck();
      await options.getByText("Tags").click();
      await options.getByLabel("Title").fill("Browser title");
      assert.equal(await options.getByRole("alert").isVisible(), false);
      assert.match(
        await text(options.locator("#options-summary")),
        /CBR 128 kb\/s, 0:01 – 2, mono, no cover/,
      );

      // Remembered between visits.
      await page.reload();
      await page.locator('#connection[data-state="live"]').waitFor();
      assert.equal(await options.getByLabel("Quality").inputValue(), "128k");
      assert.equal(await options.getByLabel("Start").inputValue(), "0:01");
      assert.equal(await options.getByLabel("Title").inputValue(), "Browser title");
      assert.equal(await options.getByLabel("Mono").isChecked(), true);
      assert.equal(await options.getByLabel("Cover picture").isChecked(), false);

      const ranges: string[] = [];
      page.on("request", (request) => {
        if (request.url().includes("signature=")) ranges.push(request.headers().range ?? "none");
      });
      const known = await page
        .locator("#jobs li.job")
        .evaluateAll((items) => items.map((item) => item.getAttribute("data-id")));
      await page.locator("#file-input").setInputFiles(media("holiday.mp4"));
      const added = page.locator("#jobs li.job").first();
      const id = await until(async () => {
        const newest = await added.getAttribute("data-id");
        return newest !== null && !known.includes(newest) ? newest : undefined;
      }, "the new job's row");
      const row = page.locator(`#jobs li.job[data-id="${id}"]`);
      await row.and(page.locator('[data-status="done"]')).waitFor({ timeout: 60_000 });
      const job = (await (await api(token, `/jobs/${id}`)).json()) as {
        mp3Id: string;
        mp3Size: number;
        options: Record<string, unknown>;
      };
      assert.deepEqual(
        { ...job.options },
        {
          quality: "128k",
          start: 1,
          end: 2,
          normalize: false,
          mono: true,
          track: 0,
          title: "Browser title",
          artist: null,
          album: null,
          cover: "none",
          chapters: "keep",
        },
      );
      assert.equal(await text(row.locator(".job-name")), "holiday.mp3");
      assert.ok(
        (await text(row.locator(".job-meta"))).startsWith(
          `${formatKilobytes(job.mp3Size)} · from holiday.mp4`,
        ),
        "the MP3's size, and the video it came from",
      );

      const saved = media("options.mp3");
      await writeFile(
        saved,
        Buffer.from(await (await api(token, `/download?fid=${job.mp3Id}`)).arrayBuffer()),
      );
      const details = await mp3Details(saved);
      assert.equal(details.audio.bitRate, 128_000);
      assert.equal(details.audio.channels, 1);
      assert.equal(details.tags.title, "Browser title");
      assert.equal(details.picture, undefined);
      assert.ok(Math.abs((await decodedSeconds(saved)) - 1) <= 1152 / 44100);

      // The player streams the MP3 from a signed URL, with Range requests, and plays it.
      await row.getByRole("button", { name: "Play holiday.mp3" }).click();
      const audio = row.locator("audio");
      await audio.waitFor();
      // These functions run in the page, so they cannot share a helper with the test.
      await until(async () => {
        const time = await audio.evaluate(
          (element) => (element as unknown as { currentTime: number }).currentTime,
        );
        return time > 0.2 ? true : undefined;
      }, "the player playing");
      const duration = await audio.evaluate(
        (element) => (element as unknown as { duration: number }).duration,
      );
      assert.ok(Math.abs(duration - 1) < 0.1, `the player says ${duration} s`);
      assert.ok(ranges.length > 0 && ranges.every((range) => range.startsWith("bytes=")), ranges.join(", "));

      await options.getByRole("button", { name: "Defaults" }).click();
      assert.match(await text(options.locator("#options-summary")), /^Defaults/);
    });

    it("adds a user through the Users view, who can then sign in", async () => {
      await page.getByRole("link", { name: "Users" }).click();
      const panel = page.locator("#users-view");
      await panel.locator("td.user-email", { hasText: ADMIN.email }).waitFor();
      await panel.getByLabel("E-mail", { exact: true }).fill(BOB.email);
      await panel.getByLabel("Password", { exact: true }).fill("short");
      await panel.getByRole("button", { name: "Add user" }).click();
      assert.match(await text(panel.locator("#user-error")), /at least 8/);

      await panel.getByLabel("Password", { exact: true }).fill(BOB.password);
      await panel.getByRole("button", { name: "Add user" }).click();
      await panel.locator("td.user-email", { hasText: BOB.email }).waitFor();

      const bob = await openPage([401, 403]);
      await bob.page.goto(server.url);
      await signIn(bob.page, BOB.email, BOB.password);
      await bob.page.locator("#app-view").waitFor();
      assert.equal(await text(bob.page.locator("#account-email")), BOB.email);
      assert.equal(await bob.page.locator("#account-admin").isVisible(), false);
      assert.equal(await bob.page.locator("#users-view").isVisible(), false, "no users view for non-admins");
      assert.equal(await bob.page.getByRole("link", { name: "Users" }).count(), 0);
      await bob.page.getByText("Nothing here yet").waitFor();

      // A token the API refuses (403: here a broken signature, as for an expired one) brings the sign-in back.
      const bobsToken = String(await tokenOf(bob.page));
      const broken = `${bobsToken.slice(0, -4)}${bobsToken.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
      await bob.page.evaluate((value) => sessionStorage.setItem("vid2mp3.token", value), broken);
      await bob.page.reload();
      await bob.page.locator("#signin-view").waitFor();
      assert.match(await text(bob.page.locator("#signin-notice")), /sign in again/i);
      assert.equal(await tokenOf(bob.page), null, "the refused token is forgotten");

      // Disabled by the admin, Bob can no longer sign in; enabled again, he can.
      await panel.getByRole("button", { name: `Disable ${BOB.email}` }).click();
      await panel.getByRole("button", { name: `Enable ${BOB.email}` }).waitFor();
      await signIn(bob.page, BOB.email, BOB.password);
      await bob.page.locator("#signin-error").waitFor();
      await panel.getByRole("button", { name: `Enable ${BOB.email}` }).click();
      await panel.getByRole("button", { name: `Disable ${BOB.email}` }).waitFor();
      await signIn(bob.page, BOB.email, BOB.password);
      await bob.page.locator("#app-view").waitFor();
      assert.deepEqual(bob.problems.unexpected, []);
    });

    it("signs out", async () => {
      await page.locator("#account-button").click();
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.locator("#signin-view").waitFor();
      assert.equal(await tokenOf(page), null);
      assert.equal(await page.locator("#app-view").isVisible(), false);
    });

    it("had no console errors beyond the expected 400 (refused option), 401 (wrong password) and 415 (refused file)", () => {
      assert.deepEqual(problems.unexpected, []);
    });

    it("offers the MP3 of the mail's link /?fid=<id> after sign-in", async () => {
      const job = (await (await api(token, `/jobs/${jobIds.get("holiday.mp3")}`)).json()) as {
        mp3Id: string;
      };
      const visitor = await openPage();
      await visitor.page.goto(`${server.url}/?fid=${encodeURIComponent(job.mp3Id)}`);
      await visitor.page.locator("#signin-view").waitFor();
      assert.match(await text(visitor.page.locator("#signin-notice")), /download your MP3/i);
      await signIn(visitor.page, ADMIN.email, ADMIN.password);
      const offer = visitor.page.locator("#fid-offer");
      await offer.getByRole("heading", { name: "Your MP3 is ready" }).waitFor();
      assert.match(await text(offer), /holiday\.mp3/);
      const [download] = await Promise.all([
        visitor.page.waitForEvent("download"),
        offer.getByRole("button", { name: "Download MP3" }).click(),
      ]);
      assert.equal(download.suggestedFilename(), "holiday.mp3");
      assert.deepEqual(visitor.problems.unexpected, []);
    });
  });
});

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Locator, type Page } from "playwright-core";
import { findChromium } from "../support/chromium.ts";
import { type NpmStart, startNpmStart } from "../support/npm-start.ts";

/**
 * The sandbox page in real headless Chromium (the one the `@sparticuz/chromium` devDependency carries, or
 * `CHROMIUM_PATH`; driven by playwright-core): two virtual phones exchange messages through their proxy
 * numbers, driven only through the page.
 */

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const artifacts = join(repoRoot, "test-artifacts");
const chromiumBinary = await findChromium();
// Where no Chromium can be had (another OS or CPU), the test is skipped, except in CI where it must run.
const unavailable = "unavailable" in chromiumBinary ? chromiumBinary.unavailable : undefined;

let stack: NpmStart | undefined;
let browser: Browser | undefined;

before(
  async () => {
    if ("unavailable" in chromiumBinary) {
      assert.ok(!process.env.CI, `CI runs the browser test: ${chromiumBinary.unavailable}`);
      return;
    }
    [stack, browser] = await Promise.all([
      startNpmStart(),
      chromium.launch({
        executablePath: chromiumBinary.executablePath,
        env: chromiumBinary.env,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      }),
    ]);
  },
  { timeout: 90_000 },
);

after(async () => {
  await browser?.close().catch(() => {});
  if (!stack) return;
  const { pid } = stack;
  const exit = await stack.stop();
  // npm dies of the SIGINT it forwarded; the stack itself must have shut down and left nothing behind.
  assert.ok(exit.code === 0 || exit.signal === "SIGINT", `npm start exited with ${JSON.stringify(exit)}`);
  assert.match(stack.output(), /stopped\./);
  assert.throws(() => process.kill(-pid, 0), { code: "ESRCH" }, "no process of npm start is left");
});

const card = (page: Page, number: string) =>
  page.locator(`[data-testid="phone-card"][data-phone="${number}"]`);
const bubbles = (phone: Locator, text: string) =>
  phone.getByTestId("message-bubble").filter({ hasText: text });

/** The proxy number a phone's compose form offers: its own participant entry's proxyNumber. */
async function offeredProxy(phone: Locator): Promise<string> {
  const option = phone.locator('[data-testid="compose-to"] option[value^="+"]');
  await option.first().waitFor({ state: "attached" });
  assert.equal(await option.count(), 1, "one open session, one proxy to choose");
  return (await option.first().getAttribute("value")) ?? "";
}

async function send(phone: Locator, to: string, body: string) {
  await phone.getByTestId("compose-to").selectOption(to);
  await phone.getByTestId("compose-body").fill(body);
  await phone.getByTestId("send").click();
}

test("two virtual phones text each other through their proxy numbers on the sandbox page", {
  timeout: 90_000,
  skip: process.env.CI ? false : unavailable,
}, async () => {
  assert.ok(stack && browser);
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(15_000);
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(message.text());
  });

  await page.goto(stack.url);
  assert.equal(await page.title(), "Maskline sandbox");
  await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
  await page.locator('[data-testid="pool-row"]').first().waitFor();

  // Two phones, created with the button.
  const phoneCards = page.getByTestId("phone-card");
  await page.getByTestId("create-phone").click();
  await phoneCards.nth(0).waitFor();
  await page.getByTestId("create-phone").click();
  await phoneCards.nth(1).waitFor();
  const a = (await phoneCards.nth(0).getAttribute("data-phone")) ?? "";
  const b = (await phoneCards.nth(1).getAttribute("data-phone")) ?? "";
  assert.match(a, /^\+\d{8,15}$/);
  assert.match(b, /^\+\d{8,15}$/);
  assert.notEqual(a, b);
  const phoneA = card(page, a);
  const phoneB = card(page, b);

  // A session between them.
  await page.getByTestId("open-session-a").selectOption(a);
  await page.getByTestId("open-session-b").selectOption(b);
  await page.getByTestId("open-session").click();
  const sessionRow = page.getByTestId("session-row");
  await sessionRow.waitFor();
  assert.equal(await sessionRow.count(), 1);

  const proxyA = await offeredProxy(phoneA);
  const proxyB = await offeredProxy(phoneB);
  // What the page offers is what the product allocated (read-only check against the sandbox state).
  const state = (await (await fetch(`${stack.url}/sandbox/state`)).json()) as {
    sessions: { participants: { phoneNumber: string; proxyNumber: string }[] }[];
  };
  const participants = state.sessions[0]?.participants ?? [];
  assert.equal(participants.find((p) => p.phoneNumber === a)?.proxyNumber, proxyA);
  assert.equal(participants.find((p) => p.phoneNumber === b)?.proxyNumber, proxyB);

  // A texts its proxy; B receives it from B's proxy number, never from A's real number.
  const hello = `Hi from A ${Date.now()}`;
  await send(phoneA, proxyA, hello);
  const atB = bubbles(phoneB, hello);
  await atB.waitFor();
  assert.equal(await atB.getAttribute("data-direction"), "in");
  assert.equal(await atB.getAttribute("data-counterpart"), proxyB);
  assert.match((await atB.textContent()) ?? "", new RegExp(`from ${proxyB.replace("+", "\\+")}`));
  assert.equal(await bubbles(phoneA, hello).getAttribute("data-direction"), "out");

  // B replies, keyboard only: focus the message field, type, Enter.
  const reply = `Reply from B ${Date.now()}`;
  await phoneB.getByTestId("compose-to").selectOption(proxyB);
  await phoneB.getByTestId("compose-body").focus();
  await page.keyboard.type(reply);
  await page.keyboard.press("Enter");
  const atA = bubbles(phoneA, reply);
  await atA.waitFor();
  assert.equal(await atA.getAttribute("data-direction"), "in");
  assert.equal(await atA.getAttribute("data-counterpart"), proxyA);

  // Each message arrived exactly once, and neither side ever saw the other's real number.
  assert.equal(await bubbles(phoneB, hello).count(), 1);
  assert.equal(await bubbles(phoneA, reply).count(), 1);
  assert.ok(!((await phoneB.getByTestId("thread").textContent()) ?? "").includes(a));
  assert.ok(!((await phoneA.getByTestId("thread").textContent()) ?? "").includes(b));

  // A sends a picture with a caption (an MMS): B receives it, from proxy(B), and the picture loads.
  await phoneA.getByTestId("compose-to").selectOption(proxyA);
  await phoneA.getByTestId("compose-body").fill("The view");
  await phoneA.getByTestId("send-picture").click();
  const pictureAtB = bubbles(phoneB, "The view");
  await pictureAtB.waitFor();
  assert.equal(await pictureAtB.getAttribute("data-counterpart"), proxyB);
  const picture = pictureAtB.getByTestId("message-picture");
  assert.equal(await picture.count(), 1);
  const src = (await picture.getAttribute("src")) ?? "";
  assert.match(src, /\/sample-picture\.png$/);
  await page.waitForFunction(
    `[...document.querySelectorAll('[data-phone="${b}"] [data-testid="message-picture"]')].every((img) => img.complete && img.naturalWidth > 0)`,
  );

  // One click on STOP: B texts STOP to its proxy, and the carrier-level block shows on B's card.
  const optOut = phoneB.getByTestId("opt-out-state");
  assert.equal(await optOut.getAttribute("data-opted-out"), "false");
  await phoneB.getByTestId("compose-to").selectOption(proxyB);
  await phoneB.getByTestId("quick-stop").click();
  const stopBubble = phoneB
    .locator('[data-testid="message-bubble"][data-direction="out"]')
    .filter({ has: page.locator(".text", { hasText: /^STOP$/ }) });
  await stopBubble.first().waitFor();
  assert.equal(await stopBubble.first().getAttribute("data-counterpart"), proxyB);
  await phoneB.locator('[data-testid="opt-out-state"][data-opted-out="true"]').waitFor();
  assert.equal(await optOut.getAttribute("data-numbers"), proxyB);
  assert.match((await optOut.textContent()) ?? "", new RegExp(proxyB.replace("+", "\\+")));
  const sandboxState = (await (await fetch(`${stack.url}/sandbox/state`)).json()) as {
    phones: { phoneNumber: string; optOut: { numbers: string[]; messagingServices: string[] } }[];
  };
  assert.deepEqual(sandboxState.phones.find((p) => p.phoneNumber === b)?.optOut, {
    numbers: [proxyB],
    messagingServices: [],
  });

  // Maskline keeps the opt-out too: the keyword is never relayed to A, and A's next text is not sent to B.
  const whileOptedOut = `Are you there? ${Date.now()}`;
  await send(phoneA, proxyA, whileOptedOut);
  await page.locator('[data-testid="feed-item"][data-type="ParticipantOptedOut"]').waitFor();
  await page
    .locator('[data-testid="feed-item"][data-type="MessageBlocked"]')
    .nth(1)
    .waitFor({ state: "attached" });
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await bubbles(phoneB, whileOptedOut).count(), 0, "nothing reaches an opted-out person");
  assert.equal(
    await phoneA
      .locator('[data-testid="message-bubble"][data-direction="in"]')
      .filter({ hasText: /^STOP$/ })
      .count(),
    0,
    "the keyword is never relayed",
  );

  // The feed shows the domain events, newest first.
  await page.locator('[data-testid="feed-item"][data-type="MessageForwarded"]').nth(1).waitFor();
  await page.locator('[data-testid="feed-item"][data-type="SessionOpened"]').waitFor();
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "sandbox-session-open.png"), fullPage: true });

  // At a phone's width the page reflows instead of scrolling sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  // The page script is a string: the project compiles without the DOM's types.
  const fit = (await page.evaluate(`(() => {
    const root = document.documentElement;
    const outside = [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > root.clientWidth + 0.5)
      .map((el) => el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ").join(".") : ""));
    return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, outside: outside.slice(0, 12) };
  })()`)) as { scrollWidth: number; clientWidth: number; outside: string[] };
  await page.screenshot({ path: join(artifacts, "sandbox-390px.png"), fullPage: true });
  assert.ok(fit.scrollWidth <= fit.clientWidth, `the page overflows at 390 px: ${JSON.stringify(fit)}`);
  await page.setViewportSize({ width: 1440, height: 1000 });

  // START lifts the carrier-level block: the state on B's card clears.
  await phoneB.getByTestId("quick-start").click();
  await phoneB
    .locator('[data-testid="opt-out-state"][data-opted-out="false"]')
    .waitFor({ state: "attached" });
  assert.ok(await optOut.isHidden());
  // And Maskline delivers again.
  const afterStart = `Welcome back ${Date.now()}`;
  await send(phoneA, proxyA, afterStart);
  await bubbles(phoneB, afterStart).waitFor();
  assert.equal(await bubbles(phoneB, afterStart).getAttribute("data-counterpart"), proxyB);

  // Close the session: its row goes, the compose form offers no proxy any more.
  await sessionRow.getByTestId("close-session").click();
  await sessionRow.waitFor({ state: "detached" });
  await phoneA.locator('[data-testid="compose-to"] option[value^="+"]').waitFor({ state: "detached" });
  await page.locator('[data-testid="feed-item"][data-type="SessionClosed"]').waitFor();

  // A texts the old proxy anyway (typed in): the out-of-session auto-reply comes back from that number.
  const late = `Still there? ${Date.now()}`;
  await phoneA.getByTestId("compose-to-other").fill(proxyA);
  await phoneA.getByTestId("compose-body").fill(late);
  await phoneA.getByTestId("send").click();
  const autoReply = phoneA.locator('[data-testid="message-bubble"][data-auto-reply="true"]');
  await autoReply.waitFor();
  assert.equal(await autoReply.getAttribute("data-direction"), "in");
  assert.equal(await autoReply.getAttribute("data-counterpart"), proxyA);
  await page.locator('[data-testid="feed-item"][data-type="OutOfSessionMessage"]').waitFor();
  assert.equal(await bubbles(phoneB, late).count(), 0, "nothing is forwarded after the session closed");

  await page.screenshot({ path: join(artifacts, "sandbox.png"), fullPage: true });
  assert.deepEqual(pageErrors, []);
  await page.close();
});

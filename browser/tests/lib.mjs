// Shared by the browser tests: Debian's Chromium under playwright-core, sign-in (with the
// TOTP second factor, enrolled on first sign-in), screenshots as artefacts.
import { chromium } from "playwright-core";
import { TOTP, Secret } from "otpauth";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

export const BASE = (process.env.OPORA_URL || "").replace(/\/$/, "");
export const ARTEFACTS = process.env.OPORA_ARTEFACTS || "../target/browser";
export const PASSWORD = process.env.OPORA_DEMO_PASSWORD || "opora-demo-2026";
const EXECUTABLE = process.env.OPORA_CHROMIUM || "/usr/bin/chromium";

if (!BASE) throw new Error("OPORA_URL is not set: the address of a running `opora serve --demo`");
mkdirSync(ARTEFACTS, { recursive: true });

let browser;
export async function openBrowser() {
  browser ??= await chromium.launch({ executablePath: EXECUTABLE, headless: true });
  return browser;
}
export async function closeBrowser() {
  await browser?.close();
  browser = undefined;
}

// A fresh context (its own cookies) with a laptop-sized or phone-sized viewport. Every
// page error and every answer of 500 or more fails the test that caused it.
export async function newUser(t, { phone = false } = {}) {
  const b = await openBrowser();
  const context = await b.newContext({
    baseURL: BASE,
    locale: "ru-RU",
    viewport: phone ? { width: 390, height: 844 } : { width: 1280, height: 900 },
  });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`script error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  t.after(async () => {
    // The page as it was when the test ended, for a failure's post-mortem.
    await page.screenshot({ path: join(ARTEFACTS, `last-${slug(t.name)}.png`), fullPage: true }).catch(() => {});
    await context.close();
    assert.deepEqual(problems, [], "the browser saw errors");
  });
  return page;
}

// The second factor's secrets enrolled by these tests, kept beside the screenshots so that
// a second run against the same server can sign in again.
const SECRETS = join(ARTEFACTS, "totp-secrets.json");
const slug = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, "-").slice(0, 40);
const secrets = new Map(Object.entries(readJson(SECRETS)[BASE] ?? {}));
function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return {};
  }
}
function remember(login, secret) {
  secrets.set(login, secret);
  const all = readJson(SECRETS);
  all[BASE] = Object.fromEntries(secrets);
  writeFileSync(SECRETS, JSON.stringify(all, null, 2));
}
function code(login) {
  return new TOTP({ secret: Secret.fromBase32(secrets.get(login)) }).generate();
}

// Signs in through the login form, by the labels a screen reader announces. A user with
// a second factor enrols on first sign-in (the secret is read off the enrolment page, as
// an authenticator app would scan it) and gives a code afterwards.
export async function signIn(page, login) {
  await page.goto("/vhod");
  await page.getByLabel("Имя для входа").fill(login);
  await page.getByLabel("Пароль").fill(PASSWORD);
  await page.getByRole("button", { name: "Войти" }).click();
  await page.waitForLoadState();
  const path = new URL(page.url()).pathname;
  if (path === "/vhod/kod/podklyuchenie") {
    remember(login, (await page.locator("#secret").textContent()).trim());
    await page.getByLabel("Код из приложения (6 цифр)").fill(code(login));
    await page.getByRole("button", { name: "Подключить и войти" }).click();
  } else if (path === "/vhod/kod") {
    assert.ok(secrets.has(login), `${login} asks for a code but was enrolled outside this run`);
    await page.getByLabel("Код из приложения (6 цифр)").fill(code(login));
    await page.getByRole("button", { name: /Войти|Подтвердить/ }).click();
  }
  await page.waitForLoadState();
  assert.ok(!new URL(page.url()).pathname.startsWith("/vhod"), `${login} is still on ${page.url()}`);
}

// The page's notice after a form (role=status), or its error (role=alert) as a failure.
export async function expectNotice(page) {
  const alert = page.getByRole("alert");
  if (await alert.count()) assert.fail(`the page shows an error: ${await alert.first().textContent()}`);
  const status = page.getByRole("status").first();
  await status.waitFor();
  return (await status.textContent()).trim();
}

export async function screenshot(page, name) {
  const path = join(ARTEFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// Today in the pages' date format (ДД.ММ.ГГГГ), in Moscow.
export function today(offsetDays = 0) {
  const d = new Date(Date.now() + offsetDays * 86400e3);
  return d.toLocaleDateString("ru-RU", { timeZone: "Europe/Moscow", day: "2-digit", month: "2-digit", year: "numeric" });
}

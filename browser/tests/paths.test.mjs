// Each user's main path through Opora in headless Chromium, against a running
// `opora serve --demo` (OPORA_URL). Fields are found by their labels and buttons by their
// names, as a screen reader finds them; a screenshot of each final page is kept in
// OPORA_ARTEFACTS (target/browser by default).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, newUser, signIn, expectNotice, screenshot, today, closeBrowser } from "./lib.mjs";

after(closeBrowser);

// A dashboard table's total row («Итого по региону»), as { column header: number }.
async function totals(page, table) {
  const t = page.locator(`table#t-${table}`);
  const headers = (await t.locator("thead th").allTextContents()).map((h) => h.trim());
  const cells = await t.locator("tbody tr.total").first().locator("th, td").allTextContents();
  return Object.fromEntries(headers.map((h, i) => [h, Number((cells[i] ?? "").replace(/\s/g, "").replace(",", "."))]));
}

test("a curator opens a case, places the child, holds a consilium with an action item, returns the child home, and sees the register and dashboard change", async (t) => {
  const page = await newUser(t);
  await signIn(page, "curator22");
  const stamp = Date.now().toString(36).slice(-5);
  const family = `Браузерова-${stamp}`;

  // The dashboard before: returns home this year, in Altai.
  const dashboard = "/monitoring/vyzov/22";
  await page.goto(dashboard);
  const before = await totals(page, "vybytie");

  // A new child in the register of people, then a «Вызов» case for her.
  await page.goto("/lyudi/novyi");
  await choose(page.getByLabel("Вид"), /ребён/i);
  await choose(page.getByLabel("Пол"), /жен/i);
  await page.getByLabel("Муниципальное образование").selectOption({ index: 1 });
  await page.getByLabel("Фамилия").fill(family);
  await page.getByLabel("Имя", { exact: true }).fill("Вера");
  await page.getByLabel("Дата рождения").fill("12.03.2015");
  await page.getByRole("button", { name: "Сохранить" }).click();
  await page.getByRole("link", { name: "Открыть дело «Вызов»" }).click();
  await page.getByRole("button", { name: "Открыть дело" }).click();
  await page.waitForURL(/\/vyzov\/dela\/[0-9a-f-]{36}$/);
  const casePage = page.url();
  await expect(page.getByRole("heading", { level: 1 }), family);

  // Placement in an institution.
  await page.getByText("Помещение в учреждение", { exact: true }).click();
  const place = page.locator("form").filter({ has: page.locator('input[name="action"][value="place"]') });
  await place.getByRole("checkbox").first().check();
  await place.getByRole("button", { name: "Сохранить" }).click();
  await expectNotice(page);

  await page.goto("/vyzov/reestr");
  assert.ok(await page.getByText(family).count(), "the register does not list the placed child");

  // A consilium review: return home possible; an action item towards it.
  await page.goto(casePage);
  await page.getByText("Консилиум", { exact: true }).click();
  const review = page.locator("form").filter({ has: page.locator('input[name="action"][value="review"]') });
  await review.getByLabel("возврат домой возможен").selectOption("yes");
  await review.getByRole("button", { name: "Сохранить" }).click();
  await expectNotice(page);
  await page.getByText("Новое мероприятие", { exact: true }).click();
  const item = page.locator("form").filter({ has: page.locator('input[name="action"][value="item"]') });
  await item.getByLabel("Мероприятие").fill("Подготовить документы для возвращения в семью");
  await item.getByLabel("Ответственный исполнитель").fill("Отдел опеки");
  await item.getByLabel("Срок").fill(today(14));
  await item.getByRole("button", { name: "Сохранить" }).click();
  await expectNotice(page);
  assert.ok(await page.getByRole("cell", { name: "Подготовить документы для возвращения в семью" }).count());

  // Return home.
  await page.getByText("Выбытие из учреждения", { exact: true }).click();
  const exit = page.locator("form").filter({ has: page.locator('input[name="action"][value="exit"]') });
  await choose(exit.getByLabel("Куда выбыл"), /кровн|родител/i);
  await exit.getByRole("button", { name: "Сохранить" }).click();
  await expectNotice(page);
  await screenshot(page, "curator-case");

  // The register no longer holds her; the dashboard counts one more exit.
  await page.goto("/vyzov/reestr");
  assert.equal(await page.getByText(family).count(), 0, "the register still lists the child returned home");
  await page.goto(dashboard);
  const after = await totals(page, "vybytie");
  for (const [column, grew] of [["Помещено в учреждения", 1], ["Выбыло всего", 1], ["В кровную семью", 1], ["Рассмотрений консилиумов", 1]]) {
    assert.equal(after[column] - before[column], grew, `the dashboard's «${column}» did not change by ${grew}`);
  }
  await screenshot(page, "curator-dashboard");
});

// Picks the option of a select whose text matches `pattern`.
async function choose(select, pattern) {
  const labels = (await select.locator("option").allTextContents()).map((s) => s.trim());
  const label = labels.find((l) => pattern.test(l));
  assert.ok(label, `no option ${pattern} among ${labels.join(", ")}`);
  await select.selectOption({ label });
}

async function expect(locator, text) {
  assert.match(await locator.textContent(), new RegExp(text));
}

test("an NGO operator records an aid request, approves it, logs the delivery and sees it in the report", async (t) => {
  const page = await newUser(t);
  await signIn(page, "ngo22");
  const report = async () => {
    await page.goto("/vyzov/pomoshch/otchet");
    const fact = (term) => page.locator("dl.facts dt", { hasText: term }).first().locator("xpath=following-sibling::dd[1]");
    const number = (text) => Number(text.replace(/[^0-9,]/g, "").replace(",", "."));
    return { rubles: number(await fact("Сумма, ₽").textContent()), deliveries: number(await fact("Выдачи").textContent()) };
  };
  const before = await report();

  await page.goto("/vyzov/pomoshch/novyi");
  await page.getByLabel("Как называть семью").selectOption({ index: 1 });
  await page.getByLabel("Что нужно (кратко)").fill("Зимняя одежда и обувь для двоих детей");
  await page.getByLabel("Запрошенная сумма, ₽ (если известна)").fill("12 500");
  await page.getByRole("button", { name: "Записать запрос" }).click();
  await page.waitForURL(/\/vyzov\/pomoshch\/[0-9a-f-]{36}/);
  await expectNotice(page);
  await page.getByLabel("Одобренная сумма, ₽").fill("12 500");
  await page.getByRole("button", { name: "Одобрить" }).click();
  await expectNotice(page);
  await page.getByLabel("Сумма, ₽", { exact: true }).fill("12 500,00");
  await page.getByLabel("Поставщик").fill("ООО «Детский мир»");
  await page.getByLabel("Номер чека или документа").fill(`Чек ${Date.now().toString(36)}`);
  await page.getByRole("button", { name: "Записать выдачу" }).click();
  await expectNotice(page);
  assert.ok(await page.getByText(/12\s500,00/).count(), "the delivery's amount is not on the request's page");
  await screenshot(page, "ngo-aid-request");

  const after = await report();
  assert.equal(after.deliveries, before.deliveries + 1, "the report does not count the delivery");
  assert.equal(Math.round((after.rubles - before.rubles) * 100), 1250000, "the report's sum did not grow by 12 500,00 ₽");
  await screenshot(page, "ngo-aid-report");
});

test("a municipal education department files the Friday report", async (t) => {
  const page = await newUser(t, { phone: true });
  await signIn(page, "edu-kazan");
  await page.goto("/zastupnik/otchet");
  const previous = async (label) => {
    const row = page.getByRole("row").filter({ has: page.getByLabel(label, { exact: true }) }).first();
    const text = (await row.locator("td").last().textContent()).replace(/\s/g, "");
    return Number(text) || 0;
  };
  // A little more than last week, and different on each run (a second filing of the same
  // figures is refused as no change).
  const children = (await previous("Подключено детей (детское приложение)")) + 1 + (Date.now() % 89);
  const adults = (await previous("Подключено взрослых (взрослое приложение)")) + 1 + (Date.now() % 31);
  const schools = Math.max(await previous("Школ-участниц"), 1);
  await page.getByLabel("Подключено детей (детское приложение)", { exact: true }).fill(String(children));
  await page.getByLabel("Подключено взрослых (взрослое приложение)", { exact: true }).fill(String(adults));
  await page.getByLabel("Школ-участниц", { exact: true }).fill(String(schools));
  await page.getByLabel("Школ с назначенным ответственным", { exact: true }).fill(String(schools));
  await page.getByRole("button", { name: "Сдать отчёт" }).click();
  await expectNotice(page);
  await screenshot(page, "edu-friday-report");
  assert.ok(
    await page.getByText(new RegExp(children.toLocaleString("ru-RU").replace(/\s/g, "\\s?"))).count(),
    `the filed figure ${children} is not shown back`,
  );
});

test("an operator sees a new signal arrive in the live console and works it to the end", async (t) => {
  // The administrator registers the app's backend and gets its key, once.
  const admin = await newUser(t);
  await signIn(admin, "admin");
  await admin.goto("/admin/integracii");
  await admin.getByLabel("Название клиента").fill(`Браузерный тест ${Date.now()}`);
  await admin.getByRole("button", { name: "Зарегистрировать" }).click();
  const key = (await admin.locator("code").first().textContent()).trim();
  assert.match(key, /^\S{20,}$/, "no key shown after registering the client");

  const page = await newUser(t);
  await signIn(page, "signals");
  await page.goto("/zastupnik/signaly");
  await page.getByRole("table").first().waitFor();

  // The child presses the button: the app's backend calls the ingestion API.
  const answer = await fetch(`${BASE}/ingest/v1/signals`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${key}`,
      "idempotency-key": `browser-${Date.now()}`,
    },
    body: JSON.stringify({
      child: `browser-child-${Date.now()}`,
      pressed_at: new Date().toISOString(),
      latitude: 55.7963,
      longitude: 49.1088,
      kind: "threat",
      region: "16",
      city: "Казань",
      trusted_adults: [{ id: "mother", channels: ["push", "sms"] }],
    }),
  });
  const raised = await answer.text();
  assert.equal(answer.status, 201, raised);
  const { signal } = JSON.parse(raised);

  // It appears in the open console without a reload.
  const link = page.locator(`a[href="/zastupnik/signaly/${signal}"]`).first();
  await link.waitFor({ timeout: 20000 });
  await link.click();
  await page.getByRole("button", { name: "Принять сигнал" }).click();
  await expectNotice(page);
  await page.getByRole("button", { name: "Направить" }).click();
  await expectNotice(page);
  await page.getByRole("button", { name: "Отметить: помощь на месте" }).click();
  await expectNotice(page);
  const resolve = page.locator("form").filter({ has: page.locator('input[name="action"][value="resolve"]') });
  await choose(resolve.getByLabel("Исход"), /операторами/);
  await resolve.getByLabel("Примечание").fill("Ребёнок с мамой, помощь оказана");
  await resolve.getByRole("button", { name: "Закрыть сигнал" }).click();
  await expectNotice(page);
  await screenshot(page, "operator-signal");
  assert.equal(await page.getByRole("button", { name: "Закрыть сигнал" }).count(), 0, "the closed signal still offers to close it");
});

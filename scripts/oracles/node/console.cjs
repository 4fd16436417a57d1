// The console page in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// fill the form like a person, submit, and check what the page shows against the API's own
// JSON; then ask for a streamed reading and record what arrived. Screenshots go to OUT_DIR.
//   node console.cjs BASE_URL OUT_DIR   → one JSON object on stdout:
//   { checks: [{name, ok, detail}], reading: {...}, screenshots: [...], page_errors: [...] }
// Exit 0 when every chart check passed (the reading is judged by the caller, which knows
// whether the server can read); 1 otherwise.
"use strict";
const path = require("path");
const { chromium } = require("playwright-core");

const [base, outDir] = process.argv.slice(2);
const result = { checks: [], reading: null, screenshots: [], page_errors: [] };
const check = (name, ok, detail) => result.checks.push({ name, ok: Boolean(ok), detail });

async function api(pathname, body) {
  const r = await fetch(base + pathname, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

async function shot(page, name) {
  const file = path.join(outDir, name);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

async function run() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    page.on("pageerror", (e) => result.page_errors.push(String(e)));
    const posted = [];
    page.on("request", (r) => {
      if (r.method() === "POST") posted.push({ url: r.url(), accept: r.headers().accept, body: r.postData() });
    });
    await page.goto(base + "/");

    // 1. Saju, chart only, a city from the list.
    await page.selectOption("#city", { label: "Busan 부산" });
    await page.fill("#date", "1990-05-15");
    await page.fill("#time", "14:30");
    await page.selectOption("#sex", "female");
    await page.uncheck("#reading");
    await page.click("#submit");
    await page.waitForSelector("#saju-result:not([hidden]) .pillar.day .hanja", { timeout: 30000 });
    const sent = JSON.parse(posted.at(-1)?.body || "{}");
    check("saju request carries the city's longitude and time zone",
      sent.birth?.longitude === 129.0756 && sent.birth?.timezone === "Asia/Seoul" && sent.reading === false, sent);
    const ref = await api("/api/saju", sent);
    const shown = await page.$$eval(".pillar", (cols) => cols.map((c) => ({
      name: c.dataset.pillar,
      hanja: [...c.querySelectorAll(".glyph .hanja")].map((n) => n.textContent),
      classes: [...c.querySelectorAll(".glyph")].map((n) => n.className),
    })));
    check("four columns, hour → year", shown.map((c) => c.name).join() === "hour,day,month,year", shown);
    for (const col of shown) {
      const p = ref.body.chart?.pillars?.[col.name];
      check(`${col.name} pillar shows the API's stem and branch`,
        p && col.hanja.join("") === p.stem.hanja + p.branch.hanja, { shown: col.hanja, api: p?.hanja });
      check(`${col.name} pillar is coloured by element`,
        p && col.classes[0].includes(`el-${p.stem.element}`) && col.classes[1].includes(`el-${p.branch.element}`), col.classes);
    }
    await shot(page, "console-saju.png");

    // 2. Time unknown: no hour pillar.
    await page.check("#time_unknown");
    await page.click("#submit");
    await page.waitForFunction(() => document.querySelector(".pillar.hour .glyph.unknown"), null, { timeout: 30000 });
    const unknownSent = JSON.parse(posted.at(-1)?.body || "{}");
    check("time unknown sends no time and shows no hour pillar", unknownSent.birth && !("time" in unknownSent.birth), unknownSent);
    await page.uncheck("#time_unknown");

    // 3. Astrology, chart only: the wheel.
    await page.click('.tabs button[data-tab="astrology"]');
    await page.selectOption("#city", { label: "Seoul 서울" });
    await page.click("#submit");
    await page.waitForSelector("#astro-result:not([hidden]) #wheel svg .planet", { timeout: 30000 });
    const astroSent = JSON.parse(posted.at(-1)?.body || "{}");
    const aref = await api("/api/astrology", astroSent);
    const planets = aref.body.chart?.planets || [];
    const wheel = await page.evaluate(() => ({
      planets: [...document.querySelectorAll("#wheel .planet")].map((n) => n.dataset.planet),
      cusps: document.querySelectorAll("#wheel .cusp").length,
      aspects: document.querySelectorAll("#wheel .aspect").length,
      rows: document.querySelectorAll("#planets tbody tr").length,
    }));
    check("astrology request is the form's birth", astroSent.birth?.datetime === "1990-05-15T14:30" && astroSent.birth?.latitude === 37.5665, astroSent);
    check("every planet is on the wheel", planets.length > 0 && wheel.planets.sort().join() === planets.map((p) => p.name).sort().join(), wheel.planets);
    check("twelve house cusps", wheel.cusps === 12 && (aref.body.chart?.houses || []).length === 12, wheel.cusps);
    const drawn = (aref.body.chart?.aspects || []).filter((a) => a.kind !== "conjunction").length;
    check("aspect lines drawn (conjunctions excepted)", wheel.aspects === drawn, { drawn: wheel.aspects, api: drawn });
    check("planet table", wheel.rows === planets.length, wheel.rows);
    await shot(page, "console-astrology.png");

    // 4. Saju with a streamed reading.
    await page.click('.tabs button[data-tab="saju"]');
    await page.check("#reading");
    await page.fill("#question", "올해 직업운은 어떤가요?");
    const before = posted.length;
    await page.click("#submit");
    await page.waitForFunction(() => {
      const s = document.getElementById("status");
      return s.classList.contains("error") || s.textContent.startsWith("done");
    }, null, { timeout: 180000 });
    const req = posted.slice(before).find((r) => r.url.endsWith("/api/saju"));
    result.reading = await page.evaluate(() => ({
      status: document.getElementById("status").textContent,
      error: document.getElementById("status").classList.contains("error"),
      text: document.getElementById("reading-text").textContent,
      deltas: Number(document.getElementById("reading-text").dataset.deltas || 0),
      citations: document.querySelectorAll("#citations li").length,
      links: document.querySelectorAll("#reading-text a.cite").length,
      meta: document.getElementById("reading-meta").textContent,
    }));
    result.reading.accept = req?.accept;
    await shot(page, "console-reading.png");
  } finally {
    await browser.close();
  }
}

run()
  .catch((e) => check("the page flow ran", false, String(e && e.stack || e)))
  .finally(() => {
    if (result.page_errors.length) check("no JavaScript errors", false, result.page_errors);
    console.log(JSON.stringify(result, null, 1));
    process.exit(result.checks.every((c) => c.ok) ? 0 : 1);
  });

// starpillar console: the form, the chart renderers (four pillars, natal wheel) and a streaming
// reader for readings. Plain browser JavaScript, no build step; talks only to this origin.
"use strict";

const CITIES = [
  ["Seoul 서울", 37.5665, 126.978, "Asia/Seoul"], ["Busan 부산", 35.1796, 129.0756, "Asia/Seoul"],
  ["Incheon 인천", 37.4563, 126.7052, "Asia/Seoul"], ["Daegu 대구", 35.8714, 128.6014, "Asia/Seoul"],
  ["Daejeon 대전", 36.3504, 127.3845, "Asia/Seoul"], ["Gwangju 광주", 35.1595, 126.8526, "Asia/Seoul"],
  ["Jeju 제주", 33.4996, 126.5312, "Asia/Seoul"], ["Pyongyang 평양", 39.0392, 125.7625, "Asia/Pyongyang"],
  ["Tokyo 도쿄", 35.6762, 139.6503, "Asia/Tokyo"], ["Osaka 오사카", 34.6937, 135.5023, "Asia/Tokyo"],
  ["Beijing 베이징", 39.9042, 116.4074, "Asia/Shanghai"], ["Shanghai 상하이", 31.2304, 121.4737, "Asia/Shanghai"],
  ["Hong Kong 홍콩", 22.3193, 114.1694, "Asia/Hong_Kong"], ["Taipei 타이베이", 25.033, 121.5654, "Asia/Taipei"],
  ["Singapore 싱가포르", 1.3521, 103.8198, "Asia/Singapore"], ["Sydney 시드니", -33.8688, 151.2093, "Australia/Sydney"],
  ["London 런던", 51.5074, -0.1278, "Europe/London"], ["Paris 파리", 48.8566, 2.3522, "Europe/Paris"],
  ["Berlin 베를린", 52.52, 13.405, "Europe/Berlin"], ["New York 뉴욕", 40.7128, -74.006, "America/New_York"],
  ["Los Angeles 로스앤젤레스", 34.0522, -118.2437, "America/Los_Angeles"],
  ["Toronto 토론토", 43.6532, -79.3832, "America/Toronto"], ["São Paulo 상파울루", -23.5505, -46.6333, "America/Sao_Paulo"],
];
const SIGNS = ["aries", "taurus", "gemini", "cancer", "leo", "virgo", "libra", "scorpio",
  "sagittarius", "capricorn", "aquarius", "pisces"];
const SIGN_GLYPH = "♈♉♊♋♌♍♎♏♐♑♒♓";
const SIGN_FILL = ["#fbe3df", "#f4ead6", "#e3eef8", "#dfeaf4"]; // fire, earth, air, water
const PLANET_GLYPH = { sun: "☉", moon: "☽", mercury: "☿", venus: "♀", mars: "♂", jupiter: "♃",
  saturn: "♄", uranus: "♅", neptune: "♆", pluto: "♇", mean_node: "☊", true_node: "☊", chiron: "⚷" };
const ASPECT_STYLE = { conjunction: ["#c08a2d", ""], opposition: ["#d1453b", ""], square: ["#d1453b", ""],
  trine: ["#2f5d9e", ""], sextile: ["#2e8b57", "4 3"] };
const PILLAR_HEAD = { hour: "時柱 시주 · hour", day: "日柱 일주 · day", month: "月柱 월주 · month", year: "年柱 연주 · year" };
const ELEMENT_KO = { wood: "木 목", fire: "火 화", earth: "土 토", metal: "金 금", water: "水 수" };
const TEXT = "\uFE0E"; // text presentation, never emoji

const $ = (id) => document.getElementById(id);
let tab = "saju";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

// ---- form -------------------------------------------------------------------------------

function initForm() {
  const city = $("city");
  CITIES.forEach(([name], i) => city.append(el("option", { value: String(i) }, name)));
  city.append(el("option", { value: "custom" }, "Other (type below) 직접 입력"));
  const applyCity = () => {
    const c = CITIES[Number(city.value)];
    if (!c) return;
    $("latitude").value = c[1]; $("longitude").value = c[2]; $("timezone").value = c[3];
  };
  city.addEventListener("change", applyCity);
  for (const id of ["latitude", "longitude", "timezone"]) {
    $(id).addEventListener("input", () => { city.value = "custom"; });
  }
  applyCity();
  $("calendar").addEventListener("change", () => { $("leap-label").hidden = $("calendar").value !== "lunar"; });
  $("time_unknown").addEventListener("change", () => { $("time").disabled = $("time_unknown").checked; });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => selectTab(b.dataset.tab));
  }
  $("birth-form").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  checkSession();
}

function selectTab(name) {
  tab = name;
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const n of document.querySelectorAll(".only-saju")) n.hidden = name !== "saju";
  for (const n of document.querySelectorAll(".only-astrology")) n.hidden = name !== "astrology";
}

function headers(accept) {
  const h = { "content-type": "application/json", accept };
  const token = $("token").value.trim();
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

async function checkSession() {
  try {
    const r = await fetch("/api/me", { headers: headers("application/json") });
    if (r.ok) {
      const me = await r.json();
      const who = me.user?.email || me.user?.id || "signed in";
      $("session").textContent = `Session: ${who}${me.plan ? ` · plan ${me.plan.id ?? me.plan}` : ""}`;
    } else {
      $("session").textContent = "No session: anonymous quota applies (paste a token below or sign in on the app).";
    }
  } catch (_) {
    $("session").textContent = "";
  }
}

function readingFields(body) {
  const q = $("question").value.trim();
  if (q) body.question = q;
  body.locale = $("locale").value;
  body.reading = $("reading").checked;
  if (body.reading) body.mode = $("mode").value;
  return body;
}

function sajuBody(readingOn) {
  const birth = {
    date: $("date").value, calendar: $("calendar").value,
    timezone: $("timezone").value.trim(), longitude: Number($("longitude").value),
  };
  if ($("calendar").value === "lunar" && $("leap_month").checked) birth.leap_month = true;
  if (!$("time_unknown").checked && $("time").value) birth.time = $("time").value;
  const body = { birth, sex: $("sex").value, options: { zi_hour: $("zi_hour").value, solar_time: $("solar_time").value } };
  return readingOn ? readingFields(body) : { ...body, reading: false };
}

// ---- requests ---------------------------------------------------------------------------

async function errorText(resp) {
  try {
    const body = await resp.json();
    const e = body.error || {};
    return `${resp.status} ${e.code || ""}: ${e.message || JSON.stringify(body)}${e.field ? ` (${e.field})` : ""}`;
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

async function post(path, body, onChart) {
  const stream = body.reading === true;
  const resp = await fetch(path, {
    method: "POST", headers: headers(stream ? "text/event-stream" : "application/json"), body: JSON.stringify(body),
  });
  if (!resp.ok) throw new Error(await errorText(resp));
  const type = resp.headers.get("content-type") || "";
  if (type.includes("text/event-stream")) {
    startReading();
    await readSse(resp, (event, data) => onEvent(event, data, onChart));
    return;
  }
  const json = await resp.json();
  onChart(json.chart);
  if (json.reading) {
    startReading();
    showCitations(json.reading.citations || []);
    appendText(json.reading.text || "");
    showMeta(json.meta);
  }
}

/** Parse Server-Sent Events from a fetch body (EventSource cannot POST). */
async function readSse(resp, onEvent) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const dispatch = (block) => {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length) onEvent(event, data.join("\n"));
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
  if (buffer.trim()) dispatch(buffer);
}

function onEvent(event, data, onChart) {
  let payload;
  try { payload = JSON.parse(data); } catch (_) { return; }
  if (event === "chart") onChart(payload.chart ?? payload);
  else if (event === "citations") showCitations(payload.citations || []);
  else if (event === "delta") appendText(payload.text || "");
  else if (event === "done") {
    if (payload.citations) showCitations(payload.citations);
    showMeta(payload.meta);
  } else if (event === "error") {
    const e = payload.error || {};
    throw new Error(`${e.code || "error"}: ${e.message || data}`);
  }
}

async function submit() {
  const button = $("submit");
  button.disabled = true;
  $("reading-result").hidden = true;
  setStatus("computing…");
  const started = performance.now();
  try {
    if (tab === "saju") {
      await post("/api/saju", sajuBody(true), renderSaju);
    } else {
      await post("/api/astrology", await astrologyBody(), renderAstrology);
    }
    setStatus(`done in ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    setStatus(String(err.message || err), true);
  } finally {
    button.disabled = false;
  }
}

/** Astrology needs a civil solar date: a lunar date is converted through /api/saju. */
async function astrologyBody() {
  let date = $("date").value;
  if ($("calendar").value === "lunar") {
    const resp = await fetch("/api/saju", { method: "POST", headers: headers("application/json"), body: JSON.stringify(sajuBody(false)) });
    if (!resp.ok) throw new Error(await errorText(resp));
    date = (await resp.json()).chart.input.solar_date;
  }
  const time = !$("time_unknown").checked && $("time").value ? $("time").value : "12:00";
  const body = {
    birth: { datetime: `${date}T${time}`, timezone: $("timezone").value.trim(),
      latitude: Number($("latitude").value), longitude: Number($("longitude").value) },
    house_system: $("house_system").value,
  };
  return readingFields(body);
}

// ---- reading ----------------------------------------------------------------------------

let readingText = "";
let deltas = 0;

function startReading() {
  readingText = "";
  deltas = 0;
  $("reading-text").replaceChildren();
  $("citations").replaceChildren();
  $("reading-meta").textContent = "streaming…";
  $("reading-result").hidden = false;
}

/** The text with every `[n]` turned into a link to its source. */
function appendText(delta) {
  readingText += delta;
  deltas += 1;
  const out = $("reading-text");
  out.dataset.deltas = String(deltas); // how many pieces arrived (the browser test reads it)
  out.replaceChildren();
  const re = /\[(\d+)\]/g;
  let last = 0;
  for (let m; (m = re.exec(readingText)); ) {
    out.append(readingText.slice(last, m.index));
    out.append(el("a", { href: `#cite-${m[1]}`, class: "cite" }, `[${m[1]}]`));
    last = re.lastIndex;
  }
  out.append(readingText.slice(last));
}

function showCitations(list) {
  const ol = $("citations");
  ol.replaceChildren();
  for (const c of list) {
    ol.append(el("li", { id: `cite-${c.n}`, value: String(c.n) },
      el("b", {}, c.title || c.id), " — ", el("code", {}, c.source || ""),
      el("span", { class: "muted" }, ` (score ${typeof c.score === "number" ? c.score.toFixed(3) : "?"}, id ${c.id})`)));
  }
}

function showMeta(meta) {
  if (!meta) return;
  const bits = [meta.mode, meta.model, meta.cached ? "cached" : "fresh"];
  if (meta.timings_ms?.total) bits.push(`${Math.round(meta.timings_ms.total)} ms`);
  $("reading-meta").textContent = bits.filter(Boolean).join(" · ");
}

// ---- four pillars -----------------------------------------------------------------------

function glyph(part) {
  if (!part) return el("div", { class: "glyph unknown" }, el("span", { class: "hanja" }, "？"), el("span", { class: "hangul" }, "time unknown"));
  return el("div", { class: `glyph el-${part.element}`, title: `${part.element} · ${part.yin_yang}` },
    el("span", { class: "hanja" }, part.hanja), el("span", { class: "hangul" }, `${part.hangul} · ${ELEMENT_KO[part.element] || part.element}`));
}

function god(g) { return g ? `${g.hanja} ${g.hangul}` : ""; }

function renderSaju(chart) {
  if (!chart || !chart.pillars) return;
  $("astro-result").hidden = true;
  const grid = $("pillars");
  grid.replaceChildren();
  for (const name of ["hour", "day", "month", "year"]) {
    const p = chart.pillars[name];
    const col = el("div", { class: `pillar ${name}`, "data-pillar": name },
      el("div", { class: "head" }, PILLAR_HEAD[name]),
      el("div", { class: "god" }, name === "day" ? "日主 일간" : god(p?.ten_god)),
      glyph(p?.stem), glyph(p?.branch),
      el("div", { class: "god" }, god(p?.branch_ten_god)),
      el("div", { class: "hidden-stems" }, (p?.hidden_stems || []).map((h) => h.hanja).join(" ")),
      el("div", { class: "god" }, p?.life_stage ? `${p.life_stage.hanja} ${p.life_stage.hangul}` : ""));
    grid.append(col);
  }
  const fe = chart.five_elements || {};
  const elements = $("elements");
  elements.replaceChildren(el("b", {}, "五行 "));
  for (const k of ["wood", "fire", "earth", "metal", "water"]) {
    elements.append(el("span", { class: `chip el-${k}` }, `${ELEMENT_KO[k]} ${fe[k] ?? 0}`));
  }
  if (chart.day_master) elements.append(el("span", { class: "muted" }, ` · day master ${chart.day_master.hanja} ${chart.day_master.hangul} (${chart.day_master.element})`));
  const luck = $("luck");
  luck.replaceChildren();
  if (chart.luck?.pillars?.length) {
    const cells = el("div", { class: "cells" });
    for (const l of chart.luck.pillars) cells.append(el("div", { class: "cell" }, el("b", {}, l.hanja), `${l.start_age}세`));
    luck.append(el("b", {}, `大運 대운 (${chart.luck.direction}, from ${chart.luck.start_age_rounded})`), cells);
  }
  const inp = chart.input || {};
  $("saju-input").textContent = [`solar ${inp.solar_date}`, inp.lunar_date ? `lunar ${inp.lunar_date.year}-${inp.lunar_date.month}-${inp.lunar_date.day}${inp.lunar_date.leap_month ? " (leap)" : ""}` : "",
    inp.utc ? `UTC ${inp.utc}` : "", inp.local_mean_time ? `LMT ${inp.local_mean_time}` : ""].filter(Boolean).join(" · ");
  $("saju-result").hidden = false;
}

// ---- natal wheel ------------------------------------------------------------------------

function renderAstrology(chart) {
  if (!chart || !chart.planets) return;
  $("saju-result").hidden = true;
  $("wheel").replaceChildren(wheel(chart));
  const body = $("planets").tBodies[0];
  body.replaceChildren();
  for (const p of chart.planets) {
    body.append(el("tr", {}, el("td", {}, (PLANET_GLYPH[p.name] || "•") + TEXT), el("td", {}, p.name),
      el("td", {}, `${SIGN_GLYPH[SIGNS.indexOf(p.sign)] || ""}${TEXT} ${p.sign}`),
      el("td", {}, `${Math.floor(p.degree_in_sign)}°${String(Math.floor((p.degree_in_sign % 1) * 60)).padStart(2, "0")}′${p.retrograde ? " ℞" : ""}`),
      el("td", {}, p.house ?? "")));
  }
  const inp = chart.input || {};
  $("astro-input").textContent = `${inp.local || ""} ${inp.timezone || ""} · UTC ${inp.utc || ""} · ${chart.house_system} houses`;
  $("astro-result").hidden = false;
}

/** An SVG chart wheel: Ascendant on the left, longitudes counter-clockwise. */
function wheel(chart) {
  const size = 440, c = size / 2;
  const R = { outer: 212, signs: 180, planets: 158, inner: 118, aspects: 104 };
  const asc = chart.ascendant ?? 0;
  const at = (lon, r) => {
    const a = ((180 + lon - asc) * Math.PI) / 180;
    return [c + r * Math.cos(a), c - r * Math.sin(a)];
  };
  const root = svg("svg", { viewBox: `-16 -16 ${size + 32} ${size + 32}`, role: "img", "aria-label": "natal chart wheel" });
  root.append(svg("circle", { cx: c, cy: c, r: R.outer, fill: "#fff", stroke: "#333" }));
  for (let i = 0; i < 12; i++) {
    const a0 = i * 30, a1 = a0 + 30;
    const [x0, y0] = at(a0, R.outer), [x1, y1] = at(a1, R.outer), [x2, y2] = at(a1, R.signs), [x3, y3] = at(a0, R.signs);
    root.append(svg("path", { d: `M${x0},${y0} A${R.outer},${R.outer} 0 0 0 ${x1},${y1} L${x2},${y2} A${R.signs},${R.signs} 0 0 1 ${x3},${y3} Z`,
      fill: SIGN_FILL[i % 4], stroke: "#999", "stroke-width": 0.6 }));
    const [gx, gy] = at(a0 + 15, (R.outer + R.signs) / 2);
    root.append(svg("text", { x: gx, y: gy, "text-anchor": "middle", "dominant-baseline": "central", class: "wheel-sign" }, SIGN_GLYPH[i] + TEXT));
  }
  for (let d = 0; d < 360; d += 5) {
    const [x0, y0] = at(d, R.signs), [x1, y1] = at(d, R.signs - (d % 10 ? 3 : 6));
    root.append(svg("line", { x1: x0, y1: y0, x2: x1, y2: y1, stroke: "#999", "stroke-width": 0.5 }));
  }
  root.append(svg("circle", { cx: c, cy: c, r: R.inner, fill: "none", stroke: "#999" }));
  const cusps = chart.houses || [];
  cusps.forEach((cusp, i) => {
    const angular = i % 3 === 0;
    const [x0, y0] = at(cusp, R.aspects), [x1, y1] = at(cusp, R.signs);
    root.append(svg("line", { x1: x0, y1: y0, x2: x1, y2: y1, stroke: angular ? "#333" : "#bbb", "stroke-width": angular ? 1.4 : 0.7, class: "cusp" }));
    const next = cusps[(i + 1) % 12];
    const mid = cusp + (((next - cusp) % 360) + 360) % 360 / 2;
    const [hx, hy] = at(mid, R.aspects + 7);
    root.append(svg("text", { x: hx, y: hy, "text-anchor": "middle", "dominant-baseline": "central", class: "wheel-small" }, String(i + 1)));
  });
  for (const [lon, label] of [[asc, "ASC"], [chart.mc, "MC"]]) {
    if (lon === undefined) continue;
    const [x, y] = at(lon, R.outer + 10);
    root.append(svg("text", { x, y, "text-anchor": "middle", "dominant-baseline": "central", class: "wheel-small", "font-weight": "bold" }, label));
  }
  const index = new Map(chart.planets.map((p) => [p.name, p]));
  for (const a of chart.aspects || []) {
    const p = index.get(a.a), q = index.get(a.b);
    if (!p || !q || a.kind === "conjunction") continue;
    const [colour, dash] = ASPECT_STYLE[a.kind] || ["#999", "2 2"];
    const [x0, y0] = at(p.longitude, R.aspects), [x1, y1] = at(q.longitude, R.aspects);
    root.append(svg("line", { x1: x0, y1: y0, x2: x1, y2: y1, stroke: colour, "stroke-width": Math.max(0.5, 1.6 - a.orb / 5), "stroke-dasharray": dash, class: `aspect ${a.kind}` }));
  }
  // Planets: spread glyphs that would overlap, keep a tick at the true longitude.
  const placed = [...chart.planets].sort((x, y) => x.longitude - y.longitude).map((p) => ({ p, shown: p.longitude }));
  for (let pass = 0; pass < 3; pass++) {
    for (let i = 1; i < placed.length; i++) {
      if (placed[i].shown - placed[i - 1].shown < 7) placed[i].shown = placed[i - 1].shown + 7;
    }
  }
  for (const { p, shown } of placed) {
    const [tx0, ty0] = at(p.longitude, R.signs), [tx1, ty1] = at(p.longitude, R.signs - 9);
    root.append(svg("line", { x1: tx0, y1: ty0, x2: tx1, y2: ty1, stroke: "#333", "stroke-width": 1 }));
    const [x, y] = at(shown, R.planets - 8);
    const label = svg("text", { x, y, "text-anchor": "middle", "dominant-baseline": "central", class: "wheel-planet planet", "data-planet": p.name },
      (PLANET_GLYPH[p.name] || p.name.slice(0, 2)) + TEXT + (p.retrograde ? "ʀ" : ""));
    label.append(svg("title", {}, `${p.name} ${p.sign} ${p.degree_in_sign.toFixed(1)}°`));
    root.append(label);
  }
  return root;
}

document.addEventListener("DOMContentLoaded", initForm);

// customer-service dashboard. Plain script, no dependencies, no build step.
//
// Two Server-Sent Event feeds, read with fetch() so they can carry a bearer token:
//   /api/v1/health/stream  one `status` a second (health, outbox, relay, DLQ, HTTP totals)
//   /api/v1/events/stream  every event of the log as it settles (id = log position)
// Every value from the service is put on the page as text, never as markup.
"use strict";

const TYPES = {
  CustomerCreated: "#22c55e",
  CustomerImported: "#84cc16",
  CustomerUpdated: "#3b82f6",
  CustomerActivated: "#14b8a6",
  CustomerDeactivated: "#f59e0b",
  CustomerDeleted: "#ef4444",
  CustomerErased: "#a855f7",
};
const OTHER_COLOR = "#64748b";
const KEEP_EVENTS = 500; // in memory, for the filters
const SHOW_EVENTS = 150; // rows in the table
const BACKFILL = 100; // events shown on load, read from the log before going live
const CHART_SECONDS = 120;
const RATE_SECONDS = 10; // the throughput card's average

const state = {
  token: sessionStorage.getItem("customer-service-token") || "",
  events: [], // newest first: {position, type, envelope, raw, at (ms), fresh}
  seen: new Set(),
  paused: false,
  expanded: null, // position of the expanded row
  buckets: new Map(), // second (server clock) → Map(type → count)
  clockOffset: 0, // server time − browser time, in ms
  samples: [], // [{at, published, requests}] from status events, for rates
  lastPosition: null, // the events feed's cursor
  countedUpTo: -1, // the chart holds the log's counts up to this position (rates route)
  eventsStarted: false,
  eventsLoaded: false, // the table's backfill from the log has arrived
  renderQueued: false,
};

// ---------------------------------------------------------------- small helpers

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const colorOf = (type) => TYPES[type] || OTHER_COLOR;
const badge = (type) => el("span", { class: "badge", style: `background:${colorOf(type)}` }, type);
const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));

function duration(ms) {
  if (ms === null || ms === undefined) return "none";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function dateTime(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? String(iso) : `${new Date(ms).toLocaleDateString("en-CA")} ${clock(ms)}`;
}

function setLevel(card, level) {
  $(card).dataset.level = level;
}

function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
}

// ---------------------------------------------------------------- authentication

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

let tokenWaiters = [];

// Shows the token form; resolves once a token is entered.
function needToken(message) {
  $("auth").hidden = false;
  $("auth-error").textContent = message || "";
  $("auth-token").focus();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

$("auth-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = $("auth-token").value.trim();
  sessionStorage.setItem("customer-service-token", state.token);
  $("auth-token").value = "";
  $("auth").hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
});

async function getJson(path) {
  for (;;) {
    const response = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() }, cache: "no-store" });
    if (response.status === 401) {
      await needToken("The token was refused; paste a valid one.");
      continue;
    }
    const body = await response.json().catch(() => null);
    return { status: response.status, body };
  }
}

// ---------------------------------------------------------------- SSE over fetch

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Reads `url` as an event stream forever, reconnecting with backoff. `lastId()` is sent as
// Last-Event-ID on every reconnect, so nothing is missed or repeated.
async function follow(url, { onEvent, onOpen, onDown, lastId }) {
  let backoff = 500;
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      const id = lastId ? lastId() : null;
      if (id !== null && id !== undefined) headers["Last-Event-ID"] = String(id);
      const response = await fetch(url, { headers, cache: "no-store" });
      if (response.status === 401) {
        onDown("authentication required");
        await needToken(state.token ? "The token was refused; paste a valid one." : "");
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      onOpen();
      backoff = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = { type: "message", id: null, data: [] };
          for (const line of frame.split("\n")) {
            if (line === "" || line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event.type = text;
            else if (field === "id") event.id = text;
            else if (field === "data") event.data.push(text);
          }
          if (event.data.length) onEvent(event.type, event.id, event.data.join("\n"));
        }
      }
      onDown("the stream ended");
    } catch (error) {
      onDown(String(error && error.message ? error.message : error));
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

// ---------------------------------------------------------------- status feed

function showConnection(live, why) {
  const conn = $("conn");
  conn.dataset.state = live ? "live" : "down";
  setText("conn-text", live ? "Live" : "Reconnecting…");
  conn.title = live ? "Receiving live updates" : `Disconnected: ${why}`;
  if (!live) {
    const overall = $("overall");
    overall.className = "pill pill-off";
    overall.textContent = "Disconnected";
  }
}

function rate(key) {
  const samples = state.samples;
  if (samples.length < 2) return null;
  const last = samples[samples.length - 1];
  const first = samples.find((s) => last.at - s.at <= RATE_SECONDS * 1000) || samples[0];
  const seconds = (last.at - first.at) / 1000;
  return seconds > 0 ? Math.max(0, (last[key] - first[key]) / seconds) : null;
}

function onStatus(status) {
  const health = status.health;
  const checks = health.checks;
  const serverNow = Date.parse(health.timestamp);
  if (!Number.isNaN(serverNow)) state.clockOffset = serverNow - Date.now();

  const overall = $("overall");
  const level = { healthy: "ok", degraded: "warn", unhealthy: "bad" }[health.status] || "off";
  overall.className = `pill pill-${level}`;
  overall.textContent = health.status.charAt(0).toUpperCase() + health.status.slice(1);
  setText("version", `v${health.version}`);
  setText("uptime", `up ${duration(health.uptime * 1000)}`);

  const db = checks.database;
  setLevel("card-database", db.status === "ok" ? "ok" : "bad");
  setText("db-status", db.status === "ok" ? "OK" : "Down");
  setText("db-detail", db.message || "answering");

  const redis = checks.redis;
  setLevel("card-redis", { ok: "ok", error: "bad" }[redis.status] || "off");
  setText("redis-status", { ok: "OK", error: "Down", disabled: "Off" }[redis.status] || redis.status);
  setText("redis-detail", redis.message || "answering");

  const outbox = checks.outbox;
  const lag = outbox.oldestPendingAgeMs;
  setText("outbox-pending", number(outbox.pending));
  setText("outbox-lag", lag === null || lag === undefined ? "none" : duration(lag));
  setText("watermark", number(status.watermark));
  setLevel("card-outbox", outbox.pending === undefined ? "bad" : lag > 30000 ? "bad" : lag > 2000 ? "warn" : "ok");

  setText("relay-role", outbox.isLeader ? "Publishing" : "Standby");
  $("relay-role").title = outbox.isLeader
    ? "This instance holds the relay lease and publishes the events"
    : "Another instance holds the relay lease (or this one is about to take it)";
  setText("relay-published", number(status.relay.publishedTotal));
  setText("relay-failures", number(status.relay.failuresTotal));
  const relayError = $("relay-error");
  relayError.hidden = !outbox.lastError;
  relayError.textContent = outbox.lastError ? `last error: ${outbox.lastError}` : "";
  setLevel("card-relay", outbox.lastError ? "bad" : outbox.isLeader ? "ok" : "off");

  const depth = status.deadLetters;
  setText("dlq-depth", depth === null || depth === undefined ? "–" : number(depth));
  setText(
    "dlq-detail",
    depth === null || depth === undefined
      ? redis.status === "disabled" ? "no Redis configured" : "Redis does not answer"
      : depth === 0 ? "no consumer gave up on an event" : "see: customer-service events dlq list",
  );
  setLevel("card-dlq", depth === null || depth === undefined ? "off" : depth === 0 ? "ok" : "warn");

  const sagas = checks.sagas || { status: "disabled" };
  const configured = sagas.status !== "disabled" && sagas.status !== "error";
  const off = sagas.status === "disabled";
  setText("sagas-open", configured ? number(sagas.open) : sagas.status === "error" ? "?" : "Off");
  setText("sagas-failed", configured ? number(sagas.failed) : "–");
  setText("sagas-late", configured ? number(sagas.pastHalfDeadline) : "–");
  // Without ERASURE_PARTICIPANTS there are no sagas to count: say so instead of "Off open".
  $("sagas-open-label").hidden = off;
  $("sagas-detail").hidden = off;
  $("sagas-off").hidden = !off;
  setLevel(
    "card-sagas",
    !configured ? "off" : sagas.failed > 0 ? "bad" : sagas.pastHalfDeadline > 0 ? "warn" : "ok",
  );

  state.samples.push({ at: Date.now(), published: status.relay.publishedTotal, requests: status.http.requestsTotal });
  while (state.samples.length > RATE_SECONDS + 2) state.samples.shift();
  const httpRate = rate("requests");
  setText("http-rate", httpRate === null ? "–" : httpRate.toFixed(httpRate < 10 ? 1 : 0));
  setText("http-errors", number(status.http.serverErrorsTotal));
  setLevel("card-traffic", status.http.serverErrorsTotal > 0 ? "warn" : "ok");

  if (!state.eventsStarted && status.watermark !== null && status.watermark !== undefined) {
    state.eventsStarted = true;
    startEvents(status.watermark);
  }
  drawChart();
}

// ---------------------------------------------------------------- events feed

// The chart's window is filled from the log's counts (the same on every instance, however
// many events there were); the live feed then adds the events after those counted. The
// table shows the last BACKFILL events before going live.
async function startEvents(watermark) {
  let from = watermark;
  try {
    const answer = await getJson(`/api/v1/events/rates?seconds=${CHART_SECONDS}`);
    if (answer.status === 200) {
      const rates = answer.body.data;
      for (const { at, counts } of rates.perSecond) {
        const second = Math.floor(Date.parse(at) / 1000);
        if (Number.isNaN(second)) continue;
        state.buckets.set(second, new Map(Object.entries(counts)));
      }
      state.countedUpTo = rates.upTo;
      from = rates.upTo;
    }
  } catch (error) {
    console.warn("event rates unavailable; the chart counts the events shown", error);
  }
  state.lastPosition = Math.max(0, from - BACKFILL);
  // The table is filled from the log at once; the live feed then continues after it.
  try {
    const answer = await getJson(`/api/v1/events?after=${state.lastPosition}&limit=${BACKFILL}`);
    if (answer.status === 200) {
      for (const { position, event } of answer.body.data.events) {
        if (state.seen.has(position)) continue;
        addEvent({ position, type: event.eventType, envelope: event, raw: JSON.stringify(event) });
        state.lastPosition = Math.max(state.lastPosition, position);
      }
    }
  } catch (error) {
    console.warn("the event log is unavailable; the live feed fills the table", error);
  }
  state.eventsLoaded = true;
  queueRender();
  followEvents();
  drawChart();
}

function followEvents() {
  follow("/api/v1/events/stream", {
    lastId: () => state.lastPosition,
    onOpen: () => {},
    onDown: () => {},
    onEvent: (type, id, data) => {
      const position = Number(id);
      if (Number.isFinite(position)) state.lastPosition = position;
      if (state.seen.has(position)) return;
      let envelope;
      try {
        envelope = JSON.parse(data);
      } catch {
        return;
      }
      addEvent({ position, type, envelope, raw: data });
    },
  });
}

function addEvent(event) {
  const occurred = Date.parse(event.envelope.occurredOn);
  event.at = Number.isNaN(occurred) ? Date.now() + state.clockOffset : occurred;
  event.customerId = event.envelope.data ? event.envelope.data.customerId : undefined;
  event.actor = event.envelope.metadata ? event.envelope.metadata.actor : undefined;
  event.fresh = true;
  state.seen.add(event.position);
  state.events.unshift(event);
  while (state.events.length > KEEP_EVENTS) state.seen.delete(state.events.pop().position);

  if (event.position > state.countedUpTo) {
    const second = Math.floor(event.at / 1000);
    let bucket = state.buckets.get(second);
    if (!bucket) state.buckets.set(second, (bucket = new Map()));
    bucket.set(event.type, (bucket.get(event.type) || 0) + 1);
  }

  const filter = $("filter-type");
  if (![...filter.options].some((o) => o.value === event.type)) {
    filter.append(el("option", { value: event.type }, event.type));
  }
  queueRender();
}

function queueRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  setTimeout(() => {
    state.renderQueued = false;
    renderEvents();
    drawChart();
  }, 150);
}

function matches(event) {
  const type = $("filter-type").value;
  const customer = $("filter-customer").value.trim();
  const text = $("filter-text").value.trim().toLowerCase();
  if (type && event.type !== type) return false;
  if (customer && String(event.customerId) !== customer) return false;
  if (text && !event.raw.toLowerCase().includes(text)) return false;
  return true;
}

function renderEvents() {
  if (state.paused) return;
  const tbody = $("events").tBodies[0];
  const shown = state.events.filter(matches).slice(0, SHOW_EVENTS);
  const rows = [];
  for (const event of shown) {
    const row = el(
      "tr",
      {
        class: event.fresh ? "event fresh" : "event",
        dataset: { position: event.position, eventId: event.envelope.eventId || "", eventType: event.type },
        onclick: () => {
          state.expanded = state.expanded === event.position ? null : event.position;
          renderEvents();
        },
      },
      el("td", { class: "num" }, clock(event.at)),
      el("td", { class: "num" }, event.position),
      el("td", {}, badge(event.type)),
      el("td", {}, event.customerId ?? "–"),
      el("td", { class: "muted" }, event.actor || "–"),
      el("td", { class: "id mono", title: event.envelope.eventId || "" }, event.envelope.eventId || ""),
    );
    rows.push(row);
    if (state.expanded === event.position) {
      let pretty = event.raw;
      try {
        pretty = JSON.stringify(event.envelope, null, 2);
      } catch {
        /* shown as received */
      }
      rows.push(el("tr", { class: "detail" }, el("td", { colspan: 6 }, el("pre", {}, pretty))));
    }
    event.fresh = false;
  }
  tbody.replaceChildren(...rows);
  $("events-empty").hidden = shown.length > 0;
  $("events-empty").textContent = state.events.length
    ? "No event matches these filters."
    : state.eventsLoaded
      ? "No events yet. They appear here the moment they are published."
      : "Loading the latest events…";
  const evRate = recentRate();
  setText("events-rate", evRate.toFixed(evRate < 10 ? 1 : 0));
}

for (const id of ["filter-type", "filter-customer", "filter-text"]) {
  $(id).addEventListener("input", renderEvents);
}
$("pause").addEventListener("click", () => {
  state.paused = !state.paused;
  $("pause").setAttribute("aria-pressed", String(state.paused));
  $("pause").textContent = state.paused ? "Resume" : "Pause";
  renderEvents();
});

// ---------------------------------------------------------------- chart

function nowSecond() {
  return Math.floor((Date.now() + state.clockOffset) / 1000);
}

// Events per second over the last RATE_SECONDS complete seconds.
function recentRate() {
  const now = nowSecond();
  let total = 0;
  for (let s = now - RATE_SECONDS; s < now; s++) {
    const bucket = state.buckets.get(s);
    if (bucket) for (const n of bucket.values()) total += n;
  }
  return total / RATE_SECONDS;
}

function drawChart() {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  // One unit per CSS pixel, so labels keep their size on any screen width.
  const width = Math.max(svg.clientWidth, 200);
  const height = Math.max(svg.clientHeight, 100);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const now = nowSecond();
  const first = now - CHART_SECONDS + 1;
  for (const second of state.buckets.keys()) if (second < first - 5) state.buckets.delete(second);

  const totals = new Map();
  let peak = 0;
  for (let s = first; s <= now; s++) {
    const bucket = state.buckets.get(s);
    if (!bucket) continue;
    let sum = 0;
    for (const [type, n] of bucket) {
      sum += n;
      totals.set(type, (totals.get(type) || 0) + n);
    }
    peak = Math.max(peak, sum);
  }
  const scale = niceCeiling(Math.max(peak, 1));
  const nodes = [];
  const line = (y, label) => {
    const g = document.createElementNS(ns, "line");
    g.setAttribute("class", "grid");
    g.setAttribute("x1", "0");
    g.setAttribute("x2", String(width));
    g.setAttribute("y1", String(y));
    g.setAttribute("y2", String(y));
    nodes.push(g);
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", "6");
    t.setAttribute("y", String(y + 14));
    t.textContent = label;
    nodes.push(t);
  };
  line(10, `${scale}/s`);
  line(10 + (height - 20) / 2, `${scale / 2}/s`);
  const barWidth = width / CHART_SECONDS;
  const types = [...totals.keys()].sort((a, b) => Object.keys(TYPES).indexOf(a) - Object.keys(TYPES).indexOf(b));
  for (let s = first; s <= now; s++) {
    const bucket = state.buckets.get(s);
    if (!bucket) continue;
    let y = height;
    for (const type of types) {
      const n = bucket.get(type);
      if (!n) continue;
      const h = (n / scale) * (height - 20);
      y -= h;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String((s - first) * barWidth + 1));
      rect.setAttribute("y", String(y));
      rect.setAttribute("width", String(Math.max(barWidth - 2, 1)));
      rect.setAttribute("height", String(h));
      rect.setAttribute("rx", "2");
      rect.setAttribute("fill", colorOf(type));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${type}: ${n} at ${clock(s * 1000)}`;
      rect.append(title);
      nodes.push(rect);
    }
  }
  svg.replaceChildren(...nodes);

  const legend = $("legend");
  const items = types.map((type) =>
    el("li", {}, el("span", { class: "swatch", style: `background:${colorOf(type)}` }), type, el("span", { class: "muted" }, number(totals.get(type)))),
  );
  if (!items.length) items.push(el("li", { class: "muted" }, "no events in the last 2 minutes"));
  legend.replaceChildren(...items);
}

function niceCeiling(n) {
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (n <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

// ---------------------------------------------------------------- customer lookup

function describe(envelope) {
  const data = envelope.data || {};
  switch (envelope.eventType) {
    case "CustomerCreated":
    case "CustomerImported":
      return `${data.fullName ?? ""} <${data.email ?? ""}>`;
    case "CustomerUpdated": {
      const changed = Object.keys(data.changes || {});
      return changed.length ? `changed ${changed.join(", ")}` : "no field changed";
    }
    case "CustomerDeactivated":
      return data.reason ? `reason: ${data.reason}` : "";
    case "CustomerErased":
      return "personal data erased from every stored event";
    default:
      return data.fullName ?? "";
  }
}

function customerCard(customer, events) {
  const last = (type) => events.filter((e) => e.event.eventType === type).pop();
  const erased = last("CustomerErased");
  const deleted = !customer && events.length > 0;
  const rows = [];
  const add = (label, value) => {
    if (value === null || value === undefined || value === "") return;
    rows.push(el("dt", {}, label), el("dd", {}, typeof value === "object" ? JSON.stringify(value) : value));
  };
  if (customer) {
    add("Id", customer.id);
    add("E-mail", customer.email);
    add("Phone", customer.phone);
    add("Born", customer.dateOfBirth);
    add("Status", customer.isActive ? "active" : "inactive");
    add("Address", customer.address);
    add("Created", dateTime(customer.createdAt));
    add("Updated", dateTime(customer.updatedAt));
  }
  const name = customer ? `${customer.firstName ?? ""} ${customer.lastName ?? ""}`.trim() : "";
  let gone = null;
  if (erased) {
    gone = `Deleted, and its personal data erased from every stored event on ${dateTime(erased.event.occurredOn)}. Its history remains, without personal data.`;
  } else if (deleted) {
    const removal = last("CustomerDeleted");
    gone = removal ? `Deleted on ${dateTime(removal.event.occurredOn)}; its history remains.` : "Deleted; its history remains.";
  }
  return el(
    "div",
    { class: "customer", id: "lookup-customer", dataset: { state: erased ? "erased" : deleted ? "deleted" : "live" } },
    el("h3", {}, erased ? "Erased customer" : deleted ? "Deleted customer" : name || "Customer"),
    gone ? el("p", { class: erased ? "warn" : "muted", id: "lookup-gone" }, gone) : el("dl", {}, rows),
  );
}

async function lookup(query) {
  const result = $("lookup-result");
  result.replaceChildren(el("p", { class: "hint" }, "Looking up…"));
  let id = null;
  let customer = null;
  if (/^\d+$/.test(query)) {
    id = query;
    const answer = await getJson(`/api/v1/customers/${encodeURIComponent(id)}`);
    if (answer.status === 200) customer = answer.body.data;
  } else {
    const answer = await getJson(`/api/v1/customers/email/${encodeURIComponent(query)}`);
    if (answer.status !== 200) {
      const message = answer.body && answer.body.message ? answer.body.message : `HTTP ${answer.status}`;
      result.replaceChildren(el("p", { class: "bad", id: "lookup-error" }, message));
      return;
    }
    customer = answer.body.data;
    id = String(customer.id);
  }
  const history = await getJson(`/api/v1/customers/${encodeURIComponent(id)}/history`);
  if (history.status !== 200) {
    const message = history.body && history.body.message ? history.body.message : `HTTP ${history.status}`;
    result.replaceChildren(el("p", { class: "bad", id: "lookup-error" }, message));
    return;
  }
  const events = history.body.data.events;
  const items = events.map(({ position, event }) =>
    el(
      "li",
      { style: `--dot:${colorOf(event.eventType)}`, dataset: { eventType: event.eventType, position } },
      badge(event.eventType),
      el("span", { class: "when" }, `${dateTime(event.occurredOn)} · #${position}`),
      event.metadata && event.metadata.actor ? el("span", { class: "when" }, `by ${event.metadata.actor}`) : null,
      el("div", { class: "what" }, describe(event)),
    ),
  );
  result.replaceChildren(
    customerCard(customer, events),
    el("h2", {}, `History · ${events.length} event${events.length === 1 ? "" : "s"}`),
    events.length ? el("ol", { class: "timeline", id: "history" }, items) : el("p", { class: "muted" }, "No events."),
  );
}

$("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  const query = $("lookup-input").value.trim();
  if (query) {
    lookup(query).catch((error) => {
      $("lookup-result").replaceChildren(el("p", { class: "bad", id: "lookup-error" }, `Lookup failed: ${error.message}`));
    });
  }
});

// ---------------------------------------------------------------- customer statistics

const STATS_EVERY_MS = 5000;

async function refreshStats() {
  try {
    const answer = await getJson("/api/v1/customers/stats");
    if (answer.status !== 200) {
      setLevel("card-stats", "off");
      return;
    }
    const stats = answer.body.data;
    setText("stats-customers", number(stats.totals.customers));
    setText("stats-active", number(stats.totals.active));
    setText("stats-inactive", number(stats.totals.inactive));
    setText("stats-deleted", number(stats.totals.deleted));
    setText("stats-erased", number(stats.totals.erased));
    setText("stats-position", number(stats.position));
    setText("stats-lag", stats.lagMs === 0 ? "none" : duration(stats.lagMs));
    setLevel("card-stats", stats.lagMs > 10000 ? "bad" : stats.lagMs > 1000 ? "warn" : "ok");
  } catch (error) {
    setLevel("card-stats", "off");
  }
}

// ---------------------------------------------------------------- erasure sagas

const SAGAS_EVERY_MS = 5000;

function participantsText(saga) {
  return saga.participants
    .map((p) => {
      if (p.state === "confirmed") return `${p.name} ✓`;
      if (p.state === "failed") return `${p.name} ✗`;
      return p.attempts > 1 ? `${p.name} waiting (asked ${p.attempts}×)` : `${p.name} waiting`;
    })
    .join(" · ");
}

async function refreshSagas() {
  try {
    const [open, failed] = await Promise.all([
      getJson("/api/v1/sagas?state=open&limit=20"),
      getJson("/api/v1/sagas?state=failed&limit=20"),
    ]);
    if (open.status !== 200 || failed.status !== 200) return;
    const sagas = [...failed.body.data.sagas, ...open.body.data.sagas];
    const rows = sagas.map((saga) =>
      el(
        "tr",
        { dataset: { sagaId: saga.sagaId, state: saga.state } },
        el("td", {}, `#${saga.sagaId}`),
        el("td", {}, String(saga.customerId)),
        el("td", { class: saga.state === "failed" ? "bad" : "" }, saga.state),
        el("td", {}, dateTime(saga.deadline)),
        el("td", {}, participantsText(saga)),
        el("td", {}, saga.reason || ""),
      ),
    );
    $("sagas").querySelector("tbody").replaceChildren(...rows);
    $("sagas-empty").hidden = rows.length > 0;
  } catch (error) {
    console.error("sagas", error);
  }
}

// ---------------------------------------------------------------- start

follow("/api/v1/health/stream", {
  onOpen: () => showConnection(true),
  onDown: (why) => showConnection(false, why),
  onEvent: (type, _id, data) => {
    if (type !== "status") return;
    try {
      onStatus(JSON.parse(data));
    } catch (error) {
      console.error("bad status", error);
    }
  },
});
setInterval(drawChart, 1000);
refreshStats();
setInterval(refreshStats, STATS_EVERY_MS);
refreshSagas();
setInterval(refreshSagas, SAGAS_EVERY_MS);
renderEvents();

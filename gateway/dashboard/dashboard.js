// The dashboard: reads the admin API (/api/status, /api/events,
// /api/events/ID, /api/activity) with the admin token and replays an event
// (POST /api/events/ID/replay, after a confirmation). The page itself holds no data; without a
// token that the daemon accepts it shows nothing but the login form.
// The token comes from the form or from the address (#token=..., which a
// browser never sends to a server) and is kept for this tab only
// (sessionStorage). Every value from the API is set as text, never as markup.
"use strict";

const REFRESH_MS = 5000;
// The chart counts per minute, and counting reads every event of the hour:
// it is fetched once a minute, not with every refresh.
const CHART_MS = 60000;
let chartAt = 0;
let token = sessionStorage.getItem("gateway-token") || "";
let openEvent = null;
let timer = null;
// Paging: the id the shown page starts before (null: the newest), and the
// starts of the pages before it, for Newer.
let before = null;
const pages = [];
const PAGE = 50;
const SVG = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}

function say(text, error) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

class Refused extends Error {}

async function api(method, path) {
  const r = await fetch(path, {
    method: method,
    headers: { "Authorization": "Bearer " + token },
    cache: "no-store",
    credentials: "omit",
  });
  if (r.status === 401) throw new Refused("the admin token was refused");
  if (!r.ok) throw new Error(method + " " + path + ": HTTP " + r.status + " " + (await r.text()).trim());
  return r.json();
}

function signOut(why) {
  token = "";
  sessionStorage.removeItem("gateway-token");
  openEvent = null;
  chartAt = 0;
  $("data").hidden = true;
  $("detail").hidden = true;
  for (const part of ["#counts thead tr", "#counts tbody tr", "#connections tbody",
                      "#events tbody", "#alerts", "#attempts", "#detail-fields"])
    document.querySelector(part).replaceChildren();
  $("login").hidden = false;
  say(why, true);
}

function showStatus(st) {
  const head = $("counts").querySelector("thead tr"), body = $("counts").querySelector("tbody tr");
  head.replaceChildren();
  body.replaceChildren();
  for (const [state, n] of Object.entries(st.events || {})) {
    head.appendChild(el("th", state, state));
    const td = el("td", n, state);
    td.dataset.state = state;
    body.appendChild(td);
  }
  $("inbox").textContent = st.inbox > 0
    ? st.inbox + " webhooks accepted in a burst are becoming events." : "";
  const alerts = $("alerts");
  alerts.replaceChildren();
  for (const a of st.alerts || [])
    alerts.appendChild(el("li", (a.connection ? a.connection + ": " : "") + a.condition +
                              " since " + a.since + " - " + a.detail, "bad"));
  const pick = $("connection"), chosen = pick.value;
  const names = (st.connections || []).map((c) => c.name);
  if (pick.options.length !== names.length + 1) {
    pick.replaceChildren(el("option", "all"));
    pick.options[0].value = "";
    for (const n of names) pick.appendChild(el("option", n));
    pick.value = names.includes(chosen) ? chosen : "";
  }
  const tbody = $("connections").querySelector("tbody");
  tbody.replaceChildren();
  for (const c of st.connections || []) {
    const auth = el("td", c.authorised ? "authorised" : "needs authorisation",
                    c.authorised ? "good" : "bad");
    const circuit = el("td", c.circuit || "", c.circuit === "open" ? "bad" : "");
    const mplus = c.mplus_login_refused_until
      ? el("td", "login refused until " + c.mplus_login_refused_until, "bad")
      : el("td", c.mplus_api_version ? "API " + c.mplus_api_version : (c.mplus_error || ""));
    const refresh = c.refresh_token_expires_at || "";
    const throttled = el("td", c.throttled_until || "", c.throttled_until ? "bad" : "");
    const tr = row([c.name, c.realm_id || "", c.flows || "", auth,
                    refresh ? "refresh " + refresh : (c.access_token_expires_at || ""), circuit,
                    throttled, mplus, c.last_error || c.mplus_error || ""]);
    tr.dataset.connection = c.name;
    tbody.appendChild(tr);
  }
}

// The events received per minute over the last hour, as bars: each bar
// stacked by the state its events are in now.
function showChart(activity) {
  const svg = $("chart");
  svg.replaceChildren();
  const minutes = activity.minutes || [];
  const width = 720, height = 120, gap = 2;
  const bar = Math.max(2, Math.floor(width / Math.max(1, minutes.length)) - gap);
  const most = Math.max(1, ...minutes.map((m) => m.received || 0));
  const order = ["done", "skipped", "pending", "in_flight", "retrying", "dead"];
  let total = 0;
  minutes.forEach((m, i) => {
    let y = height;
    total += m.received || 0;
    for (const state of order) {
      const n = m[state] || 0;
      if (!n) continue;
      const h = Math.max(1, Math.round((n / most) * (height - 10)));
      y -= h;
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", String(i * (bar + gap)));
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(bar));
      r.setAttribute("height", String(h));
      r.setAttribute("class", state);
      const t = document.createElementNS(SVG, "title");
      t.textContent = m.at + ": " + n + " " + state;
      r.appendChild(t);
      svg.appendChild(r);
    }
  });
  $("chart-legend").textContent = total + " events in the last hour, at most " + most +
    " in a minute. Colours: done, skipped, queued, dead.";
}

function eventsQuery() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const f of ["state", "entity", "connection"]) {
    const v = $(f).value.trim();
    if (v) q.set(f, v);
  }
  if (before !== null) q.set("before", String(before));
  return "/api/events?" + q.toString();
}

function firstPage() {
  before = null;
  pages.length = 0;
  refresh();
}

function showEvents(list) {
  $("older").disabled = list.length < PAGE;
  $("newer").disabled = before === null;
  $("older").dataset.next = list.length ? String(list[list.length - 1].id) : "";
  $("page").textContent = before === null ? "newest " + list.length
    : list.length + " older than event " + before;
  const tbody = $("events").querySelector("tbody");
  tbody.replaceChildren();
  for (const e of list) {
    const open = el("button", e.id, "open");
    open.type = "button";
    open.addEventListener("click", () => { openEvent = e.id; loadEvent(); });
    const idCell = el("td");
    idCell.appendChild(open);
    const tr = row([idCell, e.state, e.source, e.connection || "", e.entity || "",
                    e.entity_id || "", e.operation || "", e.attempts, e.received_at,
                    e.last_error || e.reason || ""], e.state);
    tr.dataset.id = e.id;
    tbody.appendChild(tr);
  }
}

function text(v) { return typeof v === "string" ? v : JSON.stringify(v, null, 2); }

function showEvent(e) {
  $("detail").hidden = false;
  $("detail-id").textContent = e.id;
  const dl = $("detail-fields");
  dl.replaceChildren();
  for (const k of ["state", "source", "connection", "entity", "entity_id", "operation",
                   "attempts", "received_at", "occurred_at", "next_attempt_at", "reason",
                   "last_error", "qbo_id"]) {
    if (e[k] === undefined || e[k] === null || e[k] === "") continue;
    dl.appendChild(el("dt", k));
    dl.appendChild(el("dd", text(e[k]), k === "state" ? e[k] : ""));
  }
  const came = e.payload !== undefined ? e.payload : e.raw_body;
  $("payload-box").hidden = came === undefined;
  $("payload").textContent = came === undefined ? "" : text(came);
  const box = $("attempts");
  box.replaceChildren();
  for (const h of e.history || []) {
    const div = el("div", null, "attempt");
    div.appendChild(el("h3", h.at + " " + h.outcome + (h.attempt ? " (attempt " + h.attempt + ")" : "")));
    if (h.reason) div.appendChild(el("p", h.reason));
    if (h.error) div.appendChild(el("p", h.error, "bad"));
    if (h.calls && h.calls.length) {
      const t = el("table", null, "calls");
      t.appendChild(row(["system", "request", "status", "id", "ms", "sent", "answered"].map(
        (x) => el("th", x))));
      for (const c of h.calls) {
        const sent = el("td"), got = el("td");
        if (c.request !== undefined) sent.appendChild(el("pre", text(c.request)));
        if (c.response !== undefined) got.appendChild(el("pre", text(c.response)));
        if (c.error) got.appendChild(el("p", c.error, "bad"));
        t.appendChild(row([c.system, c.operation || (c.method + " " + c.path),
                           c.status === undefined ? (c.outcome || "") : c.status + " " + (c.outcome || ""),
                           c.intuit_tid || c.request_id || "", c.ms === undefined ? "" : c.ms,
                           sent, got], "call"));
      }
      div.appendChild(t);
    }
    if (h.calls_not_kept) div.appendChild(el("p", h.calls_not_kept + " further calls not kept"));
    box.appendChild(div);
  }
  $("replay").hidden = !(e.state === "dead" || e.state === "skipped" || e.state === "done");
  $("replay").dataset.id = e.id;
}

async function loadEvent() {
  if (openEvent === null) return;
  try {
    showEvent(await api("GET", "/api/events/" + encodeURIComponent(openEvent)));
  } catch (err) {
    failed(err);
  }
}

function failed(err) {
  if (err instanceof Refused) signOut(err.message + ": enter the admin token again.");
  else say(err.message, true);
}

async function refresh() {
  if (!token) return;
  clearTimeout(timer);
  try {
    const [st, list, activity] = await Promise.all([
      api("GET", "/api/status"),
      api("GET", eventsQuery()),
      Date.now() - chartAt >= CHART_MS ? api("GET", "/api/activity?minutes=60") : null,
    ]);
    $("login").hidden = true;
    $("data").hidden = false;
    showStatus(st);
    showEvents(list);
    if (activity) {
      showChart(activity);
      chartAt = Date.now();
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    say("Connected to the admin API.", false);
    if (openEvent !== null) await loadEvent();
  } catch (err) {
    failed(err);
  }
  if (token) timer = setTimeout(refresh, REFRESH_MS);
}

// Replay asks first: the event goes back to the queue and is booked again.
function askReplay() {
  $("confirm-text").textContent = "Replay event " + $("replay").dataset.id +
    "? It goes back to the queue and its flow runs again.";
  $("confirm").hidden = false;
}

async function replay() {
  $("confirm").hidden = true;
  const id = $("replay").dataset.id;
  try {
    const r = await api("POST", "/api/events/" + encodeURIComponent(id) + "/replay");
    await refresh();
    say("Replayed event " + (r.replayed || []).join(", ") + ": it is queued again.", false);
  } catch (err) {
    failed(err);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const m = /^#token=(.+)$/.exec(location.hash);
  if (m) {
    token = decodeURIComponent(m[1]);
    sessionStorage.setItem("gateway-token", token);
    history.replaceState(null, "", location.pathname);
  }
  // #event=ID (the link an alert carries): that event, opened.
  const ev = /^#event=(\d+)$/.exec(location.hash);
  if (ev) openEvent = Number(ev[1]);
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value;
    $("token").value = "";
    sessionStorage.setItem("gateway-token", token);
    refresh();
  });
  $("state").addEventListener("change", firstPage);
  $("connection").addEventListener("change", firstPage);
  $("entity").addEventListener("change", firstPage);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); firstPage(); });
  $("older").addEventListener("click", () => {
    if (!$("older").dataset.next) return;
    pages.push(before);
    before = Number($("older").dataset.next);
    refresh();
  });
  $("newer").addEventListener("click", () => {
    before = pages.length ? pages.pop() : null;
    refresh();
  });
  $("replay").addEventListener("click", askReplay);
  $("confirm-yes").addEventListener("click", replay);
  $("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; });
  $("close").addEventListener("click", () => {
    openEvent = null;
    $("detail").hidden = true;
    $("confirm").hidden = true;
  });
  if (token) refresh();
});

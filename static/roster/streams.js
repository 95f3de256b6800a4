// Voice Connector streams, live: the broadcaster does not push streams, so this page polls
// /api/voice-connector-streams every data-poll-seconds and redraws the groups when the answer
// changed. Server-rendered first paint; untrusted text goes in with textContent only.

import { HttpError, el, fetchJson, formatDateTime, readJsonScript, setText } from "./live.js";

const STATUSES = ["STARTED", "UPDATED", "FAILED", "ENDED"];
const OFFLINE_AFTER = 3; // failed polls in a row
const COLUMNS = 9;

const app = document.getElementById("streams-app");
const groupsEl = document.getElementById("stream-groups");
const summary = document.getElementById("stream-summary");
const statusEl = document.getElementById("connection-status");
const lastEventEl = document.getElementById("last-event");
const banner = document.getElementById("stale-banner");

const filter = app.dataset.status || "";
const pollMs = Math.max(1, Number(app.dataset.pollSeconds) || 5) * 1000;
const url = filter ? `${app.dataset.url}?status=${encodeURIComponent(filter)}` : app.dataset.url;

let drawn = "";
let failures = 0;
let timer = null;
let polling = false;
let stopped = false;

/** An ISO time from the event as local date and time; the raw text when it does not parse. */
function timeCell(className, iso) {
  const cell = el("td", { className });
  if (!iso) {
    cell.textContent = "—";
    return cell;
  }
  const ms = Date.parse(iso);
  cell.append(el("time", { datetime: iso, title: iso, text: Number.isNaN(ms) ? iso : formatDateTime(ms) }));
  return cell;
}

function streamRow(s) {
  const ids = el("td", { className: "mono ids", title: s.stream_arn || null }, String(s.voice_connector_id), " ");
  ids.append(el("span", { className: "sub", text: String(s.transaction_id) }));
  return el(
    "tr",
    { className: "stream-row", dataset: { key: `${s.voice_connector_id}/${s.transaction_id}` } },
    el("th", { scope: "row", className: "mono call-id", text: s.call_id || "—" }),
    el("td", { className: "direction", text: s.direction || "—" }),
    el("td", { className: "mono from-number", text: s.from_number || "—" }),
    el("td", { className: "mono to-number", text: s.to_number || "—" }),
    timeCell("start-time", s.start_time),
    timeCell("end-time", s.end_time),
    timeCell("failure-time", s.failure_time),
    el("td", { className: "failure-reason", text: s.failure_reason || "" }),
    ids,
  );
}

function groupSection(status, count, streams) {
  const head = el(
    "h2",
    { id: `group-${status}` },
    el("span", { className: `badge stream-status stream-${status.toLowerCase()}`, text: status.toLowerCase() }),
    " ",
    el("span", { className: "sub group-count", text: String(count) }),
  );
  const tbody = el("tbody");
  if (streams.length === 0) {
    tbody.append(el("tr", { className: "empty-row" }, el("td", { colspan: COLUMNS, text: `No ${status.toLowerCase()} streams.` })));
  }
  for (const s of streams) tbody.append(streamRow(s));
  const headers = ["Call id", "Direction", "From", "To", "Started", "Ended", "Failed", "Failure reason", "Voice Connector / transaction"];
  const table = el(
    "table",
    { className: "streams" },
    el("thead", null, el("tr", null, ...headers.map((h) => el("th", { scope: "col", text: h })))),
    tbody,
  );
  return el(
    "section",
    { className: "stream-group", dataset: { status }, "aria-labelledby": `group-${status}` },
    el("div", { className: "section-head" }, head),
    el("div", { className: "table-wrap" }, table),
  );
}

function draw(data) {
  const key = JSON.stringify(data);
  if (key === drawn) return;
  drawn = key;
  const streams = Array.isArray(data.streams) ? data.streams : [];
  const counts = data.counts || {};
  const sections = STATUSES.filter((s) => !filter || s === filter).map((status) =>
    groupSection(status, Number(counts[status]) || 0, streams.filter((s) => s.status === status)),
  );
  groupsEl.replaceChildren(...sections);
  const total = STATUSES.reduce((n, s) => n + (Number(counts[s]) || 0), 0);
  let text = `${total} stream${total === 1 ? "" : "s"}`;
  if (data.truncated) text += `, the newest ${streams.length} shown`;
  setText(summary, text);
  for (const node of document.querySelectorAll("[data-count-for]")) {
    setText(node, String(Number(counts[node.dataset.countFor]) || 0));
  }
  const newest = streams.reduce((m, s) => (typeof s.status_at === "number" && s.status_at > m ? s.status_at : m), -1);
  if (lastEventEl && newest >= 0) {
    setText(lastEventEl, formatDateTime(newest));
    lastEventEl.setAttribute("datetime", new Date(newest).toISOString());
  }
}

function setState(state, message = "") {
  document.documentElement.dataset.live = state;
  if (statusEl) {
    statusEl.dataset.state = state;
    setText(statusEl, state);
  }
  if (banner) {
    banner.hidden = state === "live";
    setText(banner, message);
  }
  if (state === "live") delete groupsEl.dataset.stale;
  else groupsEl.dataset.stale = "true";
}

async function poll() {
  timer = null;
  if (polling || stopped) return;
  polling = true;
  try {
    draw(await fetchJson(url));
    failures = 0;
    setState("live");
  } catch (err) {
    failures += 1;
    if (err instanceof HttpError && (err.status === 401 || err.status === 403)) {
      stopped = true;
      setState("offline", "Signed out: log in again to resume live updates.");
    } else {
      console.warn("roster: streams poll", err);
      setState(
        failures >= OFFLINE_AFTER ? "offline" : "reconnecting",
        "Cannot reach the server: the streams below may be out of date. Retrying…",
      );
    }
  } finally {
    polling = false;
  }
  schedule();
}

function schedule() {
  if (timer === null && !stopped && document.visibilityState !== "hidden") timer = setTimeout(poll, pollMs);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && timer === null && !polling) poll();
});

const initial = readJsonScript("initial-streams");
if (initial) draw(initial);
setState("live");
schedule();

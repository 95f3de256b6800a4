// The meeting list: server-rendered first paint, then kept live from the dashboard socket
// (subscribe "*" with attendees: false). Rows are keyed by meeting_id and updated in place,
// at most once per animation frame.

import {
  LiveFeed,
  el,
  fetchJson,
  formatDateTime,
  frameScheduler,
  readJsonScript,
  recordingBadge,
  setText,
  statusBadge,
  transcriptionBadge,
} from "./live.js";

const STATUS_ORDER = { active: 0, unknown: 1, ended: 2 };
const COLUMNS = 9;

const app = document.getElementById("meeting-list-app");
const tbody = document.getElementById("meeting-rows");
const summary = document.getElementById("meeting-summary");
const wrap = document.getElementById("meeting-table-wrap");

/** meeting_id -> meeting object (the newest by seq). */
const meetings = new Map();
/** meeting_id -> {tr, cells, meeting (as last drawn)} */
const rows = new Map();
let drawnOrder = [];

function count(value) {
  return typeof value === "number" ? String(value) : "—";
}

/** Active first, then unknown, then ended; within a group newest started_at first. */
function compareMeetings(a, b) {
  const ga = STATUS_ORDER[a.status] ?? 1;
  const gb = STATUS_ORDER[b.status] ?? 1;
  if (ga !== gb) return ga - gb;
  const sa = typeof a.started_at === "number" ? a.started_at : -Infinity;
  const sb = typeof b.started_at === "number" ? b.started_at : -Infinity;
  if (sa !== sb) return sb - sa;
  const ea = String(a.external_meeting_id ?? a.meeting_id);
  const eb = String(b.external_meeting_id ?? b.meeting_id);
  if (ea !== eb) return ea < eb ? -1 : 1;
  return a.meeting_id < b.meeting_id ? -1 : a.meeting_id > b.meeting_id ? 1 : 0;
}

function buildRow(id) {
  const link = el("a", { href: `/meetings/${encodeURIComponent(id)}/` });
  const region = el("span", { className: "sub" });
  const cells = {
    meeting: el("th", { scope: "row", className: "meeting" }, link, " ", region),
    status: el("td", { className: "status" }),
    joined: el("td", { className: "num joined" }),
    dropped: el("td", { className: "num dropped" }),
    video: el("td", { className: "num video" }),
    sharing: el("td", { className: "num sharing" }),
    peak: el("td", { className: "num peak" }),
    started: el("td", { className: "started" }, el("time")),
    badges: el("td", { className: "badges" }),
  };
  const tr = el("tr", { className: "meeting-row", dataset: { meetingId: id } }, ...Object.values(cells));
  return { tr, cells, link, region, meeting: null };
}

function fillRow(row, m) {
  const prev = row.meeting;
  if (prev === m) return false;
  const { cells } = row;
  setText(row.link, m.external_meeting_id || m.meeting_id);
  row.link.title = `Meeting ${m.meeting_id}`;
  setText(row.region, m.media_region || "");
  row.tr.dataset.status = m.status || "unknown";
  if (!prev || prev.status !== m.status) cells.status.replaceChildren(statusBadge(m.status));
  setText(cells.joined, count(m.joined_count));
  setText(cells.dropped, count(m.dropped_count));
  setText(cells.video, count(m.video_count));
  setText(cells.sharing, count(m.sharing_count));
  setText(cells.peak, count(m.peak_joined));
  const time = cells.started.firstChild;
  setText(time, formatDateTime(m.started_at));
  if (typeof m.started_at === "number") time.setAttribute("datetime", new Date(m.started_at).toISOString());
  else time.removeAttribute("datetime");
  if (
    !prev ||
    prev.recording !== m.recording ||
    prev.transcription !== m.transcription ||
    prev.transcription_message !== m.transcription_message
  ) {
    const badges = [];
    if (m.recording) badges.push(recordingBadge());
    const tb = transcriptionBadge(m.transcription, m.transcription_message);
    if (tb) badges.push(tb);
    cells.badges.replaceChildren(...badges);
  }
  if (prev && prev.seq !== m.seq) {
    // Brief highlight of a row that just changed (restart the animation).
    row.tr.classList.remove("flash");
    void row.tr.offsetWidth; // eslint-disable-line no-void
    row.tr.classList.add("flash");
  }
  row.meeting = m;
  return true;
}

function render() {
  const ordered = [...meetings.values()].sort(compareMeetings);
  for (const m of ordered) {
    let row = rows.get(m.meeting_id);
    if (!row) {
      row = buildRow(m.meeting_id);
      rows.set(m.meeting_id, row);
    }
    fillRow(row, m);
  }
  for (const [id, row] of rows) {
    if (!meetings.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  const order = ordered.map((m) => m.meeting_id);
  const sameOrder = order.length === drawnOrder.length && order.every((id, i) => id === drawnOrder[i]);
  if (!sameOrder || tbody.querySelector(":scope > :not(.meeting-row)")) {
    if (order.length === 0) {
      tbody.replaceChildren(
        el(
          "tr",
          { className: "empty-row" },
          el("td", { colspan: COLUMNS, text: app.dataset.emptyText || "No meetings yet." }),
        ),
      );
    } else {
      tbody.replaceChildren(...order.map((id) => rows.get(id).tr));
    }
    drawnOrder = order;
  }
  const active = ordered.filter((m) => m.status === "active").length;
  setText(
    summary,
    `${ordered.length} meeting${ordered.length === 1 ? "" : "s"} · ${active} active`,
  );
}

const scheduleRender = frameScheduler(render);

function putMeeting(m) {
  if (!m || typeof m.meeting_id !== "string") return;
  const held = meetings.get(m.meeting_id);
  if (held && typeof held.seq === "number" && typeof m.seq === "number" && m.seq < held.seq) return;
  meetings.set(m.meeting_id, m);
}

function replaceAll(list) {
  meetings.clear();
  for (const m of list) putMeeting(m);
  scheduleRender();
}

// First paint came from the server; JS rebuilds the same rows from the JSON in the same task
// (no paint in between), then keeps them live.
const initial = readJsonScript("initial-meetings") || [];
for (const tr of tbody.querySelectorAll("tr.meeting-row")) tr.remove();
replaceAll(initial);
render();

const feed = new LiveFeed({
  path: app.dataset.wsPath || "/ws/dashboard/",
  meetings: "*",
  attendees: false,
  staleTargets: [wrap],
  apply(msg) {
    if (msg.type === "snapshot") meetings.delete(msg.meeting.meeting_id); // whole truth, any seq
    putMeeting(msg.meeting);
    scheduleRender();
  },
  async resync() {
    const data = await fetchJson(app.dataset.meetingsUrl || "/api/meetings/");
    const list = Array.isArray(data.meetings) ? data.meetings : [];
    replaceAll(list);
    return list;
  },
});
for (const m of initial) feed.hold(m.meeting_id, m.seq);
feed.start();

// Debug/test hook.
window.rosterList = { feed, meetings, render };

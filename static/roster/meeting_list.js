// The meeting list: one page at a time from /api/meetings/ (search, filters and sort done by the
// server), the first one rendered by the server. The rows on screen stay live and in place; a
// meeting that would now appear among them is counted in the "N new meetings" pill instead of
// being slotted in under the reader. The socket subscribes "*" without snapshots (docs/feed.md):
// only the rows on screen are caught up, every other meeting's first change comes as it is.

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

const STATUS_RANK = { active: 0, unknown: 1, ended: 2 };
const COLUMNS = 9;
const DEBOUNCE_MS = 300;
const RESYNC_LIMIT = 200; // the API's largest page

const app = document.getElementById("meeting-list-app");
const form = document.getElementById("meeting-filters");
const tbody = document.getElementById("meeting-rows");
const summary = document.getElementById("meeting-summary");
const wrap = document.getElementById("meeting-table-wrap");
const more = document.getElementById("more-meetings");
const pill = document.getElementById("new-meetings");
const queryError = document.getElementById("query-error");
const apiUrl = app.dataset.meetingsUrl || "/api/meetings/";

/** The rows on screen, in the server's order: meeting_id -> {tr, cells, meeting}. */
const rows = new Map();
/** Meetings not on screen that now belong among the rows: the pill's count. */
const newIds = new Set();
let next = null; // the cursor of the page after the last one shown
let loading = null; // AbortController of the page request in flight

// --- the view the form asks for -----------------------------------------------------------

function view() {
  const data = new FormData(form);
  const value = (name) => String(data.get(name) || "").trim();
  return {
    q: value("q"),
    status: value("status"),
    started_after: value("started_after"),
    started_before: value("started_before"),
    sort: value("sort") || "active",
  };
}

function viewParams(v, extra = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...v, ...extra })) {
    if (value && !(name === "sort" && value === "active")) params.set(name, value);
  }
  return params;
}

/** A date input's YYYY-MM-DD as epoch ms at 00:00 UTC (the server reads it so). */
function dayMs(text) {
  return text ? Date.parse(`${text}T00:00:00Z`) : null;
}

/** What the client can tell of "does the server's list hold this meeting": an attendee's user id
 * matching the search is not in a meeting object, so such a meeting is not counted. */
function matchesView(m, v) {
  if (v.status && m.status !== v.status) return false;
  const after = dayMs(v.started_after);
  const before = dayMs(v.started_before);
  if (after !== null && !(typeof m.started_at === "number" && m.started_at >= after)) return false;
  if (before !== null && !(typeof m.started_at === "number" && m.started_at < before)) return false;
  if (v.q) {
    const q = v.q.toLowerCase();
    return m.meeting_id === v.q || String(m.external_meeting_id || "").toLowerCase().includes(q);
  }
  return true;
}

/** The server's order (roster.read.selectors.MEETING_SORTS), for "would it appear above". */
function sortKeys(m, sort) {
  const started = typeof m.started_at === "number" ? m.started_at : null;
  switch (sort) {
    case "newest":
      return [-(started ?? -1), m.meeting_id];
    case "oldest":
      return [started ?? Number.MAX_SAFE_INTEGER, m.meeting_id];
    case "name":
      return [String(m.external_meeting_id || "").toUpperCase(), m.meeting_id];
    default:
      return [STATUS_RANK[m.status] ?? 1, -(started ?? -1), m.meeting_id];
  }
}

function before(a, b, sort) {
  const ka = sortKeys(a, sort);
  const kb = sortKeys(b, sort);
  for (let i = 0; i < ka.length; i += 1) {
    if (ka[i] !== kb[i]) return ka[i] < kb[i];
  }
  return false;
}

// --- rows ---------------------------------------------------------------------------------

function count(value) {
  return typeof value === "number" ? String(value) : "—";
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
  return { tr, cells, link, region, meeting: null, drawn: null };
}

function fillRow(row) {
  const m = row.meeting;
  const prev = row.drawn;
  if (prev === m) return;
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
  row.drawn = m;
}

const dirty = new Set();
function drawDirty() {
  for (const id of dirty) {
    const row = rows.get(id);
    if (row) fillRow(row);
  }
  dirty.clear();
  drawPill();
}
const scheduleDraw = frameScheduler(drawDirty);

function drawPill() {
  pill.hidden = newIds.size === 0;
  setText(pill, `${newIds.size} new meeting${newIds.size === 1 ? "" : "s"}: show`);
}

function drawSummary() {
  const shown = rows.size;
  const active = [...rows.values()].filter((row) => row.meeting.status === "active").length;
  const total = next ? `${shown}+` : String(shown);
  setText(summary, `${total} meeting${shown === 1 ? "" : "s"} · ${active} active on screen`);
  more.hidden = !next;
}

function emptyText(v) {
  const filtered = v.q || v.status || v.started_after || v.started_before;
  return filtered ? "No meeting matches this search." : app.dataset.emptyText || "No meetings yet.";
}

/** Show a page: in place of the rows (a new view), or after them (More). */
function showPage(page, { append }) {
  const list = Array.isArray(page.meetings) ? page.meetings : [];
  if (!append) {
    for (const id of rows.keys()) feed.forget(id);
    rows.clear();
    newIds.clear();
  }
  const added = [];
  for (const m of list) {
    if (!m || typeof m.meeting_id !== "string" || rows.has(m.meeting_id)) continue;
    const row = buildRow(m.meeting_id);
    row.meeting = m;
    fillRow(row);
    rows.set(m.meeting_id, row);
    newIds.delete(m.meeting_id);
    feed.hold(m.meeting_id, m.seq);
    added.push(row.tr);
  }
  next = typeof page.next === "string" ? page.next : null;
  if (!append) {
    tbody.replaceChildren(
      ...(added.length
        ? added
        : [el("tr", { className: "empty-row" }, el("td", { colspan: COLUMNS, text: emptyText(view()) }))]),
    );
  } else {
    tbody.append(...added);
  }
  drawSummary();
  drawPill();
}

async function load({ append = false, limit = null } = {}) {
  if (loading) loading.abort();
  const controller = new AbortController();
  loading = controller;
  const v = view();
  const params = viewParams(v, { cursor: append ? next : "", limit: limit ? String(limit) : "" });
  try {
    const page = await fetchJson(`${apiUrl}?${params}`, { signal: controller.signal });
    if (loading !== controller) return null;
    queryError.hidden = true;
    showPage(page, { append });
    if (!append) history.replaceState(null, "", `${location.pathname}${viewParams(v).size ? `?${viewParams(v)}` : ""}`);
    return page.meetings;
  } catch (err) {
    if (err.name === "AbortError") return null;
    if (err.status === 400) {
      setText(queryError, "The search could not be read: check the dates.");
      queryError.hidden = false;
      return null;
    }
    throw err;
  } finally {
    if (loading === controller) loading = null;
  }
}

// --- live -------------------------------------------------------------------------------------

function onMeeting(m) {
  const row = rows.get(m.meeting_id);
  if (row) {
    if (typeof row.meeting.seq === "number" && typeof m.seq === "number" && m.seq < row.meeting.seq) return;
    row.meeting = m;
    dirty.add(m.meeting_id);
  } else {
    // Not on screen: hold nothing for it (feed.held stays the size of the page).
    feed.forget(m.meeting_id);
    const v = view();
    const rowsList = [...rows.values()];
    const last = rowsList.length ? rowsList[rowsList.length - 1].meeting : null;
    const among = !next || (last !== null && before(m, last, v.sort));
    if (matchesView(m, v) && among) newIds.add(m.meeting_id);
    else newIds.delete(m.meeting_id);
  }
  scheduleDraw();
}

const feed = new LiveFeed({
  path: app.dataset.wsPath || "/ws/dashboard/",
  meetings: "*",
  attendees: false,
  snapshots: false,
  staleTargets: [wrap],
  apply(msg) {
    onMeeting(msg.meeting);
  },
  async resync() {
    // A gap on a row on screen: read the rows on screen again (at most the API's largest page).
    return load({ limit: Math.min(RESYNC_LIMIT, Math.max(50, rows.size)) });
  },
});

// --- the reader's controls --------------------------------------------------------------------

let typing = null;
form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typing);
  load();
});
form.addEventListener("input", (event) => {
  clearTimeout(typing);
  typing = setTimeout(() => load(), event.target.type === "search" ? DEBOUNCE_MS : 0);
});
more.addEventListener("click", () => load({ append: true }));
pill.addEventListener("click", () => {
  load().then(() => window.scrollTo({ top: 0, behavior: "smooth" }));
});

// First paint came from the server; the same rows are rebuilt from its JSON in the same task.
showPage(readJsonScript("initial-page") || { meetings: [], next: null }, { append: false });
feed.start();

// Debug/test hook.
window.rosterList = { feed, rows, newIds, load };

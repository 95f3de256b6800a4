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
/** Family figures by primary meeting id: {joined, peak, members: [{meeting_id, name, joined}]},
 * from the page (REST ``families``), then from the socket's family frames. Replicas are folded
 * under their primary's row (docs/decisions.md); an expand control lists them. */
const families = new Map();
const followed = new Set(); // primaries whose family frames the socket was asked for
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
  const toggle = el("button", { type: "button", className: "family-toggle link", "aria-expanded": "false" });
  const family = el("span", { className: "family sub" });
  family.hidden = true;
  cells.meeting.append(" ", family);
  const replicaList = el("ul", { className: "replica-list" });
  const replicas = el(
    "tr",
    { className: "replica-rows", dataset: { primaryId: id } },
    el("td", { colspan: COLUMNS }, replicaList),
  );
  replicas.hidden = true;
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    replicas.hidden = !open;
  });
  return { tr, cells, link, region, meeting: null, drawn: null, family, toggle, replicas, replicaList };
}

function familyFromPage(f, old) {
  const members = (f.members || []).map((r) => ({ meeting_id: r.meeting_id, name: r.external_meeting_id || "", joined: r.joined }));
  return { joined: f.family_joined, peak: f.family_peak_joined, members: members.length || !old ? members : old.members };
}

function familyFromFrame(msg, old) {
  const names = new Map((old ? old.members : []).map((r) => [r.meeting_id, r.name]));
  const members = msg.replicas.map((r) => ({ meeting_id: r.meeting_id, name: names.get(r.meeting_id) || "", joined: r.joined }));
  return { joined: msg.family_joined, peak: msg.family_peak_joined, members };
}

function fillFamily(row) {
  const f = families.get(row.tr.dataset.meetingId);
  const shown = Boolean(f && f.members.length);
  row.family.hidden = !shown;
  if (!shown) {
    row.replicas.hidden = true;
    return;
  }
  const n = f.members.length;
  setText(row.toggle, `${n} replica${n === 1 ? "" : "s"}`);
  row.family.replaceChildren(
    "family ",
    el("b", { className: "family-joined", text: String(f.joined) }),
    " joined · peak ",
    el("b", { className: "family-peak", text: String(f.peak) }),
    " · ",
    row.toggle,
  );
  row.replicas.hidden = row.toggle.getAttribute("aria-expanded") !== "true";
  row.replicaList.replaceChildren(
    ...f.members.map((r) =>
      el(
        "li",
        { dataset: { replicaId: r.meeting_id } },
        el("a", { href: `/meetings/${encodeURIComponent(r.meeting_id)}/`, text: r.name || r.meeting_id }),
        " ",
        el("span", { className: "replica-joined", text: `${r.joined} joined` }),
      ),
    ),
  );
}

function familiesFollow(ids) {
  const fresh = ids.filter((id) => !followed.has(id));
  for (const id of fresh) followed.add(id);
  feed.followFamilies(fresh);
}

function onFamily(msg) {
  const id = msg.primary_meeting_id;
  families.set(id, familyFromFrame(msg, families.get(id)));
  const row = rows.get(id);
  if (row) fillFamily(row);
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
  const pageFamilies = page.families && typeof page.families === "object" ? page.families : {};
  for (const m of list) {
    if (!m || typeof m.meeting_id !== "string" || rows.has(m.meeting_id)) continue;
    const row = buildRow(m.meeting_id);
    row.meeting = m;
    fillRow(row);
    const f = pageFamilies[m.meeting_id];
    if (f) families.set(m.meeting_id, familyFromPage(f, families.get(m.meeting_id)));
    fillFamily(row);
    rows.set(m.meeting_id, row);
    newIds.delete(m.meeting_id);
    feed.hold(m.meeting_id, m.seq);
    added.push(row.tr, row.replicas);
  }
  familiesFollow(Object.keys(pageFamilies).filter((id) => rows.has(id)));
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
  } else if (m.primary_meeting_id && rows.has(m.primary_meeting_id)) {
    // A replica folded under its primary's row: the family frames carry what the row shows.
    feed.forget(m.meeting_id);
    familiesFollow([m.primary_meeting_id]);
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
  families: () => [...followed],
  onFamily,
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
window.rosterList = { feed, rows, newIds, load, families };

// The meeting page: live header counts, a virtualized attendee table (10,000 rows stay smooth)
// and the SVG timeline. Updates go into an in-memory Map keyed by attendee_id; the view is
// recomputed and the visible rows redrawn at most once per animation frame.

import {
  LiveFeed,
  cssToken,
  displayName,
  el,
  fetchJson,
  formatDateTime,
  formatDuration,
  isSharing,
  liveJoinedMs,
  readJsonScript,
  recordingBadge,
  setText,
  statusBadge,
  transcriptionBadge,
} from "./live.js";
import { Timeline } from "./timeline.js";

const OVERSCAN = 10; // rows rendered above and below the viewport
const COLUMNS = 8;

// Presence order for sorting: who is here first.
const PRESENCE_RANK = { joined: 0, authorized: 1, added: 2, dropped: 3, left: 4, removed: 5 };
const presenceRank = (p) => PRESENCE_RANK[p] ?? 6;

// ---------------------------------------------------------------------------------------------
// State

/** One attendee as held: the server object plus derived keys used by filter and sort. */
function makeRecord(a) {
  const name = displayName(a);
  const lower = name.toLowerCase();
  // Natural order ("user2" before "user10"): digit runs padded, then plain string comparison.
  const natural = lower.replace(/\d+/g, (digits) => digits.padStart(12, "0"));
  return { id: a.attendee_id, a, name, lower, natural, sharing: isSharing(a), key: 0, nameRank: 0 };
}

class RosterStore {
  constructor() {
    this.meeting = null;
    this.records = new Map(); // attendee_id -> record
    this.meetingChanged = true;
    this.namesDirty = true; // a record was added or renamed: name ranks must be redone
  }

  setMeeting(meeting) {
    if (!meeting) return;
    const held = this.meeting;
    if (held && typeof held.seq === "number" && typeof meeting.seq === "number" && meeting.seq < held.seq) return;
    this.meeting = meeting;
    this.meetingChanged = true;
  }

  /** Whole roster (snapshot or REST): replaces everything. */
  replace(meeting, attendees) {
    this.meeting = null;
    this.setMeeting(meeting);
    this.records.clear();
    this.namesDirty = true;
    for (const a of attendees || []) {
      if (a && typeof a.attendee_id === "string") this.records.set(a.attendee_id, makeRecord(a));
    }
  }

  /** Changed attendees (whole states): replace by attendee_id unless what we hold is newer. */
  merge(meeting, attendees) {
    this.setMeeting(meeting);
    let changed = 0;
    for (const a of attendees || []) {
      if (!a || typeof a.attendee_id !== "string") continue;
      const held = this.records.get(a.attendee_id);
      if (held && typeof held.a.seq === "number" && typeof a.seq === "number" && a.seq < held.a.seq) continue;
      const rec = makeRecord(a);
      if (held && held.natural === rec.natural) rec.nameRank = held.nameRank;
      else this.namesDirty = true;
      this.records.set(a.attendee_id, rec);
      changed += 1;
    }
    return changed;
  }
}

// ---------------------------------------------------------------------------------------------
// Filters and sort

class ViewState {
  constructor() {
    this.presence = "all"; // all | joined | dropped | left (left or removed)
    this.video = false;
    this.sharing = false;
    this.query = "";
    this.sortKey = "presence";
    this.sortDir = 1; // 1 ascending, -1 descending
  }

  matches(rec) {
    const a = rec.a;
    switch (this.presence) {
      case "joined":
        if (a.presence !== "joined") return false;
        break;
      case "dropped":
        if (a.presence !== "dropped") return false;
        break;
      case "left":
        if (a.presence !== "left" && a.presence !== "removed") return false;
        break;
      default:
        break;
    }
    if (this.video && !a.video) return false;
    if (this.sharing && !rec.sharing) return false;
    if (this.query && !rec.lower.includes(this.query)) return false;
    return true;
  }

  isFiltered() {
    return this.presence !== "all" || this.video || this.sharing || this.query !== "";
  }

  /**
   * Sort records in place. Every record gets one numeric key (primary value, then name rank as
   * the tie-break), so the sort compares numbers only: ~10x faster than comparing strings.
   */
  sort(list, now, n) {
    const dir = this.sortDir;
    const span = n + 1; // name ranks are 0..n-1
    switch (this.sortKey) {
      case "presence":
        for (const r of list) r.key = dir * presenceRank(r.a.presence) * span + r.nameRank;
        break;
      case "time":
        // Whole seconds, as displayed: equal times fall back to name order.
        for (const r of list) r.key = dir * Math.floor(liveJoinedMs(r.a, now) / 1000) * span + r.nameRank;
        break;
      case "drops":
        for (const r of list) r.key = dir * (Number(r.a.drop_count) || 0) * span + r.nameRank;
        break;
      default:
        for (const r of list) r.key = dir * r.nameRank;
    }
    list.sort((x, y) => x.key - y.key);
  }
}

/** Give every record its rank in (name, attendee_id) order; redone only when names change. */
function rankNames(records) {
  const all = [...records.values()];
  all.sort((x, y) =>
    x.natural < y.natural ? -1 : x.natural > y.natural ? 1 : x.id < y.id ? -1 : x.id > y.id ? 1 : 0,
  );
  for (let i = 0; i < all.length; i += 1) all[i].nameRank = i;
}

// ---------------------------------------------------------------------------------------------
// Cells

const CAP_SHORT = { sendreceive: "SR", send: "S", receive: "R", none: "–" };
function capShort(value) {
  if (value === null || value === undefined || value === "") return "?";
  return CAP_SHORT[String(value).toLowerCase()] ?? String(value).slice(0, 4);
}

function capabilitiesText(caps) {
  if (!caps || typeof caps !== "object") return { text: "—", title: "No capabilities reported" };
  return {
    text: `A:${capShort(caps.audio)} V:${capShort(caps.video)} C:${capShort(caps.content)}`,
    title: `audio ${caps.audio ?? "?"}, video ${caps.video ?? "?"}, content ${caps.content ?? "?"}`,
  };
}

function sharingTitle(a) {
  const parts = [];
  if (a.screen_share) parts.push("screen share");
  if (a.content_share) parts.push("content share");
  if (a.content_video) parts.push("content video");
  return parts.length ? parts.join(", ") : "not sharing";
}

class Row {
  constructor() {
    this.tr = el("tr", { className: "row" });
    this.name = el("td", { className: "name" });
    this.presenceBadge = el("span", { className: "badge presence" });
    this.presence = el("td", { className: "presence" }, this.presenceBadge);
    this.network = el("td", { className: "network" });
    this.videoMark = el("span", { className: "flag" });
    this.video = el("td", { className: "video" }, this.videoMark);
    this.sharingMark = el("span", { className: "flag" });
    this.sharing = el("td", { className: "sharing" }, this.sharingMark);
    this.time = el("td", { className: "time num" });
    this.drops = el("td", { className: "drops num" });
    this.caps = el("td", { className: "caps" });
    this.tr.append(this.name, this.presence, this.network, this.video, this.sharing, this.time, this.drops, this.caps);
    this.rec = null;
    this.a = null;
  }

  fill(rec, index, now) {
    const tr = this.tr;
    if (this.rec === null || this.rec.id !== rec.id) tr.dataset.attendeeId = rec.id;
    tr.setAttribute("aria-rowindex", String(index + 2));
    this.rec = rec;
    if (this.a === rec.a) return; // unchanged attendee: only the ticking time may differ
    const a = rec.a;
    this.a = a;
    setText(this.name, rec.name);
    this.name.title = rec.name === rec.id ? rec.id : `${rec.name}\n${rec.id}`;
    const presence = a.presence || "—";
    setText(this.presenceBadge, presence);
    this.presenceBadge.className = `badge presence presence-${cssToken(a.presence || "none")}`;
    setText(this.network, a.network_type || "—");
    this.setFlag(this.videoMark, Boolean(a.video), a.video ? "camera on" : "camera off");
    this.setFlag(this.sharingMark, rec.sharing, sharingTitle(a));
    setText(this.time, formatDuration(liveJoinedMs(a, now)));
    this.time.classList.toggle("ticking", typeof a.joined_since === "number");
    setText(this.drops, String(Number(a.drop_count) || 0));
    this.drops.classList.toggle("has-drops", Number(a.drop_count) > 0);
    const caps = capabilitiesText(a.capabilities);
    setText(this.caps, caps.text);
    this.caps.title = caps.title;
  }

  setFlag(node, on, title) {
    setText(node, on ? "on" : "off");
    node.className = on ? "flag on" : "flag off";
    node.title = title;
  }

  tick(now) {
    const a = this.a;
    if (a && typeof a.joined_since === "number") setText(this.time, formatDuration(liveJoinedMs(a, now)));
  }
}

// ---------------------------------------------------------------------------------------------
// The virtualized table

class AttendeeGrid {
  constructor({ store, view, scroller, tbody, table, showing, now }) {
    this.store = store;
    this.viewState = view;
    this.scroller = scroller;
    this.tbody = tbody;
    this.table = table;
    this.showing = showing;
    this.now = now;
    this.view = []; // filtered + sorted records
    this.viewDirty = true;
    this.rowHeight = 0;
    this.rows = new Map(); // attendee_id -> Row currently in the DOM
    this.pool = [];
    this.drawn = [];
    this.topSpacer = this.spacer();
    this.bottomSpacer = this.spacer();
    this.emptyRow = el("tr", { className: "empty-row" }, el("td", { colspan: COLUMNS }));
    this.framePending = false;
    this.onFrame = [];
    this.lastFrameMs = 0;
    this.headH = null;
  }

  spacer() {
    const td = el("td", { colspan: COLUMNS });
    return { tr: el("tr", { className: "spacer", "aria-hidden": "true" }, td), td };
  }

  /** Mark the data (or filter/sort) changed; the next frame recomputes the view. */
  invalidate() {
    this.viewDirty = true;
    this.schedule();
  }

  schedule() {
    if (this.framePending) return;
    this.framePending = true;
    requestAnimationFrame(() => {
      this.framePending = false;
      const t0 = performance.now();
      this.render();
      this.lastFrameMs = performance.now() - t0;
      const callbacks = this.onFrame;
      this.onFrame = [];
      for (const cb of callbacks) cb(this.lastFrameMs);
    });
  }

  recompute() {
    const vs = this.viewState;
    const out = [];
    const counts = { joined: 0, dropped: 0, video: 0, sharing: 0 };
    const all = { joined: 0, dropped: 0, video: 0, sharing: 0 };
    for (const rec of this.store.records.values()) {
      const a = rec.a;
      if (a.presence === "joined") all.joined += 1;
      else if (a.presence === "dropped") all.dropped += 1;
      if (a.video) all.video += 1;
      if (rec.sharing) all.sharing += 1;
      if (!vs.matches(rec)) continue;
      out.push(rec);
      if (a.presence === "joined") counts.joined += 1;
      else if (a.presence === "dropped") counts.dropped += 1;
      if (a.video) counts.video += 1;
      if (rec.sharing) counts.sharing += 1;
    }
    if (this.store.namesDirty) {
      rankNames(this.store.records);
      this.store.namesDirty = false;
    }
    vs.sort(out, this.now(), this.store.records.size);
    this.view = out;
    this.filteredCounts = counts;
    this.totalCounts = all;
    this.viewDirty = false;
    this.table.setAttribute("aria-rowcount", String(out.length + 1));
    const total = this.store.records.size;
    const parts = [`Showing ${out.length.toLocaleString()} of ${total.toLocaleString()} attendee${total === 1 ? "" : "s"}`];
    const n = (v) => v.toLocaleString();
    parts.push(`${n(counts.joined)} joined`, `${n(counts.dropped)} dropped`, `${n(counts.video)} video`, `${n(counts.sharing)} sharing`);
    setText(this.showing, parts.join(" · "));
    this.showing.dataset.shown = String(out.length);
    this.showing.dataset.total = String(total);
    if (this.onViewChange) this.onViewChange();
  }

  measureRowHeight(row) {
    const h = row.tr.getBoundingClientRect().height;
    if (h > 0) this.rowHeight = h;
  }

  render() {
    if (this.viewDirty) this.recompute();
    const view = this.view;
    const now = this.now();
    if (view.length === 0) {
      this.emptyRow.firstChild.textContent =
        this.store.records.size === 0 ? "No attendees yet." : "No attendees match these filters.";
      if (this.drawn !== null) {
        for (const row of this.rows.values()) this.pool.push(row);
        this.rows.clear();
        this.tbody.replaceChildren(this.emptyRow);
        this.drawn = null;
      }
      return;
    }
    if (!this.rowHeight) {
      // Measure once with a real row (CSS fixes the height; this keeps JS and CSS in step).
      const probe = this.pool.pop() || new Row();
      probe.fill(view[0], 0, now);
      this.tbody.replaceChildren(probe.tr);
      this.measureRowHeight(probe);
      this.pool.push(probe);
      probe.rec = null;
      probe.a = null;
      this.drawn = [];
      if (!this.rowHeight) this.rowHeight = 32;
    }
    const rh = this.rowHeight;
    // The header height is measured once (and again after a resize): reading it every frame
    // would force a synchronous layout right after the DOM writes of the previous one.
    if (this.headH === null) this.headH = this.table.tHead ? this.table.tHead.offsetHeight : 0;
    const headH = this.headH;
    const top = Math.max(0, this.scroller.scrollTop - headH);
    const height = this.scroller.clientHeight || 600;
    let start = Math.max(0, Math.floor(top / rh) - OVERSCAN);
    let end = Math.min(view.length, Math.ceil((top + height) / rh) + OVERSCAN);
    if (start > end) start = Math.max(0, end - 1);
    if (end <= start) end = Math.min(view.length, start + 1);

    // Reuse rows still in range; recycle the others.
    const keep = new Map();
    for (let i = start; i < end; i += 1) {
      const id = view[i].id;
      const row = this.rows.get(id);
      if (row) {
        keep.set(id, row);
        this.rows.delete(id);
      }
    }
    for (const row of this.rows.values()) this.pool.push(row);
    this.rows = keep;
    const ordered = new Array(end - start);
    let changedOrder = this.drawn === null || this.drawn.length !== end - start;
    for (let i = start; i < end; i += 1) {
      const rec = view[i];
      let row = keep.get(rec.id);
      if (!row) {
        row = this.pool.pop() || new Row();
        row.a = null;
        keep.set(rec.id, row);
      }
      row.fill(rec, i, now);
      ordered[i - start] = row;
      if (!changedOrder && this.drawn[i - start] !== row) changedOrder = true;
    }
    this.setSpacer(this.topSpacer, start * rh);
    this.setSpacer(this.bottomSpacer, (view.length - end) * rh);
    if (changedOrder) {
      const nodes = [this.topSpacer.tr];
      for (const row of ordered) nodes.push(row.tr);
      nodes.push(this.bottomSpacer.tr);
      this.tbody.replaceChildren(...nodes);
      this.drawn = ordered;
    }
    // Rows parked in the pool keep no stale identity.
    for (const row of this.pool) {
      row.rec = null;
      row.a = null;
    }
  }

  setSpacer(spacer, px) {
    const h = `${Math.round(px)}px`;
    if (spacer.td.style.height !== h) spacer.td.style.height = h;
    spacer.tr.hidden = px <= 0;
  }

  /** Once a second: refresh the ticking time cells of the visible rows only. */
  tick() {
    const now = this.now();
    for (const row of this.rows.values()) row.tick(now);
  }

  /** Ids of the current view, in order (for the timeline). */
  viewIds() {
    return this.view.map((r) => r.id);
  }
}

// ---------------------------------------------------------------------------------------------
// Header

function setCount(id, value) {
  const node = document.getElementById(id);
  if (node) setText(node, typeof value === "number" ? value.toLocaleString() : "—");
}

function setTime(id, ms) {
  const node = document.getElementById(id);
  if (!node) return;
  setText(node, formatDateTime(ms));
  if (typeof ms === "number") node.setAttribute("datetime", new Date(ms).toISOString());
}

function renderHeader(meeting, totals) {
  if (!meeting) return;
  const pick = (field, fallback) => (typeof meeting[field] === "number" ? meeting[field] : fallback);
  setCount("count-joined", pick("joined_count", totals?.joined));
  setCount("count-dropped", pick("dropped_count", totals?.dropped));
  setCount("count-video", pick("video_count", totals?.video));
  setCount("count-sharing", pick("sharing_count", totals?.sharing));
  setCount("count-peak", pick("peak_joined", undefined));
  setText(document.getElementById("meeting-name"), meeting.external_meeting_id || meeting.meeting_id);
  document.title = `${meeting.external_meeting_id || meeting.meeting_id} · chime-roster`;
  setTime("meeting-started", meeting.started_at);
  setTime("meeting-ended", meeting.ended_at);
  const endedWrap = document.getElementById("meeting-ended-wrap");
  if (endedWrap) endedWrap.hidden = typeof meeting.ended_at !== "number";
  const badges = document.getElementById("meeting-badges");
  if (badges) {
    const status = statusBadge(meeting.status);
    status.id = "meeting-status";
    const nodes = [status];
    if (meeting.recording) nodes.push(recordingBadge());
    const tb = transcriptionBadge(meeting.transcription, meeting.transcription_message);
    if (tb) nodes.push(tb);
    badges.replaceChildren(...nodes);
  }
  document.body.dataset.meetingStatus = meeting.status || "unknown";
}

// ---------------------------------------------------------------------------------------------
// Wiring

const app = document.getElementById("meeting-app");
const meetingId = app.dataset.meetingId;
const store = new RosterStore();
const viewState = new ViewState();
let feed = null;
const now = () => (feed ? feed.now() : Date.now());

const grid = new AttendeeGrid({
  store,
  view: viewState,
  scroller: document.getElementById("attendee-scroll"),
  tbody: document.getElementById("attendee-rows"),
  table: document.getElementById("attendee-table"),
  showing: document.getElementById("showing-count"),
  now,
});

const timeline = new Timeline(document.getElementById("timeline"), {
  url: app.dataset.timelineUrl,
  note: document.getElementById("timeline-note"),
  now,
  laneOrder: () => grid.view.map((r) => r.id),
  isFiltered: () => viewState.isFiltered(),
  isLive: () => store.meeting?.status !== "ended",
});

// Header and timeline follow the view: header after each recompute, timeline lanes debounced.
let headerDirty = true;
grid.onViewChange = () => {
  if (headerDirty || store.meetingChanged) {
    renderHeader(store.meeting, grid.totalCounts);
    headerDirty = false;
    store.meetingChanged = false;
  }
  timeline.laneOrderChanged();
};

function applyMessage(msg) {
  if (msg.type === "snapshot") store.replace(msg.meeting, msg.attendees);
  else store.merge(msg.meeting, msg.attendees);
  headerDirty = true;
  grid.invalidate();
  // Lanes change only with attendees (a meeting-only change, or an empty catch-up, leaves them).
  if (msg.type === "snapshot") timeline.scheduleRefresh(true);
  else if (msg.attendees && msg.attendees.length) timeline.scheduleRefresh();
}

// Initial state from the page.
const initial = readJsonScript("initial-roster") || {};
store.replace(initial.meeting || null, initial.attendees || []);
grid.render();
grid.scroller.addEventListener("scroll", () => grid.schedule(), { passive: true });
if ("ResizeObserver" in window) {
  new ResizeObserver(() => {
    grid.headH = null;
    grid.schedule();
  }).observe(grid.scroller);
}
setInterval(() => grid.tick(), 1000);

// Controls
const form = document.getElementById("filters");
form.addEventListener("submit", (ev) => ev.preventDefault());
form.addEventListener("change", (ev) => {
  const t = ev.target;
  if (t.name === "presence") viewState.presence = t.value;
  else if (t.name === "video") viewState.video = t.checked;
  else if (t.name === "sharing") viewState.sharing = t.checked;
  else return;
  grid.scroller.scrollTop = 0;
  grid.invalidate();
});
document.getElementById("filter-search").addEventListener("input", (ev) => {
  viewState.query = ev.target.value.trim().toLowerCase();
  grid.scroller.scrollTop = 0;
  grid.invalidate();
});

const DEFAULT_DIR = { name: 1, presence: 1, time: -1, drops: -1 };
const headers = document.querySelectorAll("#attendee-table th[data-sort]");
function updateSortHeaders() {
  for (const th of headers) {
    const active = th.dataset.sort === viewState.sortKey;
    th.setAttribute("aria-sort", active ? (viewState.sortDir > 0 ? "ascending" : "descending") : "none");
  }
}
for (const th of headers) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.sort;
    if (viewState.sortKey === key) viewState.sortDir = -viewState.sortDir;
    else {
      viewState.sortKey = key;
      viewState.sortDir = DEFAULT_DIR[key] ?? 1;
    }
    updateSortHeaders();
    grid.invalidate();
  });
}
updateSortHeaders();

feed = new LiveFeed({
  path: app.dataset.wsPath || "/ws/dashboard/",
  meetings: [meetingId],
  attendees: true,
  awaitSync: [meetingId],
  staleTargets: [
    document.getElementById("attendee-grid-wrap"),
    document.getElementById("meeting-counts"),
    document.getElementById("timeline"),
  ],
  apply: applyMessage,
  async resync() {
    const data = await fetchJson(app.dataset.rosterUrl);
    store.replace(data.meeting, data.attendees);
    headerDirty = true;
    grid.invalidate();
    timeline.scheduleRefresh();
    return [data.meeting];
  },
});
if (store.meeting) feed.hold(meetingId, store.meeting.seq);
feed.start();
timeline.refresh();

// Test/debug hook.
window.rosterDetail = { feed, store, grid, viewState, timeline, applyMessage };

// The meeting page: live header counts and who is presenting, an attendee table that grows with
// its rows (virtualized against the page's own scroll, so 10,000 rows stay smooth), the SVG
// timeline, and the attendance summary once the meeting ended. Updates go into an in-memory Map
// keyed by attendee_id; the view is recomputed and the visible rows redrawn at most once per
// animation frame.

import {
  LiveFeed,
  cssToken,
  displayName,
  el,
  fetchJson,
  formatClock,
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
const COLUMNS = 9;

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
      case "joined": {
        // Whole seconds after the earliest join (epoch ms times n would lose precision); never
        // joined sorts last.
        const joined = (r) => (typeof r.a.first_joined_at === "number" ? r.a.first_joined_at : null);
        let t0 = Infinity;
        for (const r of list) t0 = Math.min(t0, joined(r) ?? Infinity);
        let last = 0;
        for (const r of list) if (joined(r) !== null) last = Math.max(last, Math.floor((joined(r) - t0) / 1000));
        for (const r of list) {
          const t = joined(r);
          r.key = dir * (t === null ? last + 1 : Math.floor((t - t0) / 1000)) * span + r.nameRank;
        }
        break;
      }
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

const SVG_NS = "http://www.w3.org/2000/svg";
// 16x16 line icons, drawn with the text colour.
const ICON_PATHS = {
  video: "M2 4.5h7.5a1 1 0 0 1 1 1v5a1 1 0 0 1-1 1H2a1 1 0 0 1-1-1v-5a1 1 0 0 1 1-1zM10.5 7.2l4-2.2v6l-4-2.2",
  screen: "M1.5 2.5h13v8.5h-13zM5.5 14h5M8 11v3M8 9V4.8M6 6.6l2-1.8 2 1.8",
  content: "M2.5 2.5h11v9h-11zM6.5 5v4.5l4-2.25zM5 14h6",
};

/** An icon a screen reader reads as its label (role img); sighted users get it as a tooltip. */
function icon(name, label) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICON_PATHS[name]);
  svg.append(path);
  return el("span", { className: `icon icon-${name}`, role: "img", "aria-label": label, title: label }, svg);
}

/** A cell's "nothing here": a faint dash, read as ``label``. */
function none(label) {
  return el("span", { className: "icon-none", role: "img", "aria-label": label, title: label }, "–");
}

/** What someone shares, as [icon name, words]: a screen share, and the content share (Chime's
 * "#content" attendee, which current Chime uses for screen sharing too). */
function sharingKinds(a) {
  const kinds = [];
  if (a.screen_share) kinds.push(["screen", "sharing screen"]);
  if (a.content_share || a.content_video) {
    kinds.push(["content", a.content_video ? "sharing content (video)" : "sharing content"]);
  }
  return kinds;
}

const CAP_WORDS = { sendreceive: "send & receive", send: "send only", receive: "receive only", none: "none" };
function capWords(value) {
  if (value === null || value === undefined || value === "") return "unknown";
  return CAP_WORDS[String(value).toLowerCase()] ?? String(value).toLowerCase();
}

/** Capabilities in words, kinds with the same value together: "audio, content: send & receive · video: none". */
function capabilitiesText(caps) {
  if (!caps || typeof caps !== "object") return "not reported";
  const groups = new Map();
  for (const kind of ["audio", "video", "content"]) {
    const words = capWords(caps[kind]);
    groups.set(words, [...(groups.get(words) || []), kind]);
  }
  return [...groups].map(([words, kinds]) => `${kinds.join(", ")}: ${words}`).join(" · ");
}

// Repairs (docs/reconcile.md): what reconcile synthesized from the Chime API because Chime's
// event stream lost it, read from the timeline's repair marks (superseded repairs are not there).
const repairs = { byAttendee: new Map(), meetingEnded: null };
const REPAIR_WORDS = {
  MeetingEnded: "meeting's MeetingEnded",
  AttendeeAdded: "AttendeeAdded",
  AttendeeCapabilitiesUpdated: "capabilities",
  AttendeeDeleted: "AttendeeDeleted",
};
// Said on the presence of whoever is shown joined while the meeting goes on (and in the note).
const LOST_LEAVE =
  "Chime's events say joined. If this attendee's AttendeeLeft was lost on the way, the Chime API " +
  "still lists them until the meeting ends, so the roster can correct it only then (the meeting's " +
  "end, real or repaired, closes their time).";

function repairTitle(marks) {
  const types = [...new Set(marks.map((r) => REPAIR_WORDS[String(r.type)] || String(r.type)))];
  const times = [...new Set(marks.map((r) => formatClock(r.at)))];
  return (
    `Repaired from the Chime API: Chime's event stream lost this attendee's ${types.join(" and ")}; ` +
    "reconcile made it up from what the API lists, timed at the meeting's latest known event " +
    `(${times.join(", ")}), so times may end earlier than they did.`
  );
}

/** Take the repair marks of a fetched timeline; true when they changed what the page shows. */
function repairsRead(data) {
  const byAttendee = new Map();
  for (const lane of data?.lanes || []) {
    const marks = (lane?.repairs || []).filter((r) => r && typeof r.at === "number");
    if (marks.length && typeof lane.attendee_id === "string") byAttendee.set(lane.attendee_id, repairTitle(marks));
  }
  const ended = (data?.repairs || []).filter((r) => r && r.type === "MeetingEnded" && typeof r.at === "number");
  const meetingEnded = ended.length ? ended[ended.length - 1].at : null;
  const same =
    meetingEnded === repairs.meetingEnded &&
    byAttendee.size === repairs.byAttendee.size &&
    [...byAttendee].every(([id, title]) => repairs.byAttendee.get(id) === title);
  repairs.byAttendee = byAttendee;
  repairs.meetingEnded = meetingEnded;
  return !same;
}

function repairedBadge(title) {
  return el("span", { className: "badge repaired", title }, "repaired");
}

class Row {
  constructor() {
    this.tr = el("tr", { className: "row" });
    this.name = el("td", { className: "name" });
    this.presenceBadge = el("span", { className: "badge presence" });
    this.presence = el("td", { className: "presence" }, this.presenceBadge);
    this.repair = undefined; // the repaired badge's title shown, if any
    this.joined = el("td", { className: "joined num" });
    this.time = el("td", { className: "time num" });
    this.video = el("td", { className: "video" });
    this.sharing = el("td", { className: "sharing" });
    this.drops = el("td", { className: "drops num" });
    this.network = el("td", { className: "network" });
    this.caps = el("td", { className: "caps" });
    this.tr.append(
      this.name,
      this.presence,
      this.joined,
      this.time,
      this.video,
      this.sharing,
      this.drops,
      this.network,
      this.caps,
    );
    this.rec = null;
    this.a = null;
  }

  fill(rec, index, now) {
    const tr = this.tr;
    if (this.rec === null || this.rec.id !== rec.id) tr.dataset.attendeeId = rec.id;
    tr.setAttribute("aria-rowindex", String(index + 2));
    this.rec = rec;
    const repair = repairs.byAttendee.get(rec.id);
    const live = store.meeting?.status === "active";
    if (this.a === rec.a && this.repair === repair && this.live === live) return; // only the time may differ
    const a = rec.a;
    this.a = a;
    this.live = live;
    if (this.repair !== repair) {
      this.repair = repair;
      this.presence.replaceChildren(this.presenceBadge, ...(repair ? [repairedBadge(repair)] : []));
    }
    setText(this.name, rec.name);
    this.name.title = rec.name === rec.id ? rec.id : `${rec.name}\n${rec.id}`;
    const presence = a.presence || "—";
    setText(this.presenceBadge, presence);
    this.presenceBadge.className = `badge presence presence-${cssToken(a.presence || "none")}`;
    this.presenceBadge.title = live && a.presence === "joined" ? LOST_LEAVE : "";
    setText(this.joined, formatClock(a.first_joined_at));
    const again = typeof a.joined_since === "number" && a.joined_since !== a.first_joined_at;
    this.joined.title =
      typeof a.first_joined_at !== "number"
        ? "Not joined yet"
        : `First joined ${formatDateTime(a.first_joined_at)}` +
          (again ? `, in again since ${formatClock(a.joined_since)}` : "");
    setText(this.time, formatDuration(liveJoinedMs(a, now)));
    this.time.classList.toggle("ticking", typeof a.joined_since === "number");
    this.video.replaceChildren(a.video ? icon("video", "video on") : none("video off"));
    const kinds = sharingKinds(a);
    const shares = kinds.map(([name, label]) => icon(name, label));
    this.sharing.replaceChildren(...(shares.length ? shares : [none("not sharing")]));
    setText(this.drops, String(Number(a.drop_count) || 0));
    this.drops.classList.toggle("has-drops", Number(a.drop_count) > 0);
    setText(this.network, a.network_type || "—");
    const caps = capabilitiesText(a.capabilities);
    setText(this.caps, caps);
    this.caps.classList.toggle("unknown", !a.capabilities);
    this.caps.title = a.capabilities
      ? `Capabilities: ${caps}`
      : "Chime's events carry capabilities only once the app changes them";
  }

  tick(now) {
    const a = this.a;
    if (a && typeof a.joined_since === "number") setText(this.time, formatDuration(liveJoinedMs(a, now)));
  }
}

// ---------------------------------------------------------------------------------------------
// The virtualized table: as tall as all its rows (spacers stand in for those off screen), scrolled
// with the page, so its sticky header stays in view and no fixed box is left half blank.

class AttendeeGrid {
  constructor({ store, view, tbody, table, showing, now }) {
    this.store = store;
    this.viewState = view;
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
    this.presenters = [];
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
    this.presenters = [...this.store.records.values()].filter((r) => r.sharing);
    this.presenters.sort((x, y) => x.nameRank - y.nameRank);
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
    // Where the rows start against the viewport: read before this frame writes anything.
    const bodyTop = this.tbody.getBoundingClientRect().top;
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
    const top = Math.max(0, -bodyTop);
    const height = window.innerHeight || 800;
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

/** "Presenting now": who shares, with what, as icons with their words. A live region: redrawn
 * only when what it says changes. */
function renderPresenting(meeting, presenters) {
  const node = document.getElementById("presenting");
  if (!node) return;
  const ended = meeting?.status === "ended";
  node.hidden = ended && presenters.length === 0;
  const said = JSON.stringify(presenters.map((r) => [r.name, sharingKinds(r.a)]));
  if (node.dataset.said === said) return;
  node.dataset.said = said;
  if (presenters.length === 0) {
    node.replaceChildren(el("span", { className: "presenting-none" }, "Nobody is presenting."));
    return;
  }
  const shown = presenters.slice(0, 3);
  const nodes = [el("span", { className: "presenting-label" }, "Presenting now:")];
  for (const rec of shown) {
    const kinds = sharingKinds(rec.a);
    nodes.push(
      el(
        "span",
        { className: "presenter", title: rec.name },
        ...kinds.map(([name, label]) => icon(name, label)),
        rec.name,
      ),
    );
  }
  const more = presenters.length - shown.length;
  if (more > 0) nodes.push(el("span", { className: "presenting-more" }, `and ${more} more`));
  node.replaceChildren(...nodes);
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
    if (meeting.status === "ended" && typeof repairs.meetingEnded === "number") {
      nodes.push(
        el(
          "span",
          {
            className: "badge repaired",
            id: "meeting-repaired",
            title:
              "Ended by a repair from the Chime API: Chime's MeetingEnded never arrived, and the API " +
              "answered that the meeting no longer exists, so reconcile ended it at its latest known " +
              `event (${formatClock(repairs.meetingEnded)}); times in the meeting end there.`,
          },
          "repaired from the Chime API",
        ),
      );
    }
    if (meeting.recording) nodes.push(recordingBadge());
    const tb = transcriptionBadge(meeting.transcription, meeting.transcription_message);
    if (tb) nodes.push(tb);
    badges.replaceChildren(...nodes);
  }
  document.body.dataset.meetingStatus = meeting.status || "unknown";
}

// ---------------------------------------------------------------------------------------------
// The attendance summary: once the meeting ended, what the server computed of it
// (roster.domain.attendance), fetched again when a late event changes the meeting after its end.

class AttendanceSummary {
  constructor({ section, figures, rows, url }) {
    this.section = section;
    this.figures = figures;
    this.rows = rows;
    this.url = url;
    this.shownSeq = null; // the meeting seq the summary shown was read at
    this.inFlight = false;
    this.again = false;
  }

  /** Follow the meeting: hidden while it goes on, read once it ended (and at each later seq). */
  follow(meeting) {
    this.meeting = meeting;
    if (meeting?.status !== "ended") {
      this.section.hidden = true;
      this.shownSeq = null;
      return;
    }
    if (this.shownSeq !== meeting.seq) this.refresh();
  }

  async refresh() {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    this.inFlight = true;
    const seq = this.meeting.seq;
    try {
      this.render(await fetchJson(this.url), seq);
    } catch (err) {
      console.warn("roster: attendance summary fetch failed", err);
    } finally {
      this.inFlight = false;
      if (this.again) {
        this.again = false;
        this.follow(this.meeting);
      }
    }
  }

  render(data, seq) {
    const m = data.meeting;
    const figure = (label, value, title = null) =>
      el("div", { className: "figure" }, el("dt", null, label), el("dd", { title }, value));
    this.figures.replaceChildren(
      figure(
        "Duration",
        typeof m.duration_ms === "number" ? formatDuration(m.duration_ms) : "—",
        `${formatDateTime(m.started_at)} to ${formatDateTime(m.ended_at)}`,
      ),
      figure("Peak attendance", String(m.peak)),
      figure(
        "Average attendance",
        typeof m.average === "number" ? m.average.toFixed(1) : "—",
        "Everyone's time in the meeting divided by its duration",
      ),
      figure("People who joined", String(m.attendees)),
    );
    this.rows.replaceChildren(
      ...data.people.map((p) =>
        el(
          "tr",
          { dataset: { attendeeId: p.attendee_id } },
          el("th", { scope: "row", title: p.name === p.attendee_id ? null : p.attendee_id }, p.name),
          el("td", { className: "first-join" }, formatClock(p.first_join)),
          el("td", { className: "last-leave" }, formatClock(p.last_leave)),
          el("td", { className: "total num" }, formatDuration(p.total_ms)),
          el("td", { className: `drops num${p.drops ? " has-drops" : ""}` }, String(p.drops)),
        ),
      ),
    );
    this.shownSeq = seq;
    this.section.hidden = false;
  }
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
  onData: (data) => {
    if (!repairsRead(data)) return;
    headerDirty = true;
    grid.invalidate();
  },
});

// Header and timeline follow the view: header after each recompute, timeline lanes debounced.
let headerDirty = true;
grid.onViewChange = () => {
  if (headerDirty || store.meetingChanged) {
    renderHeader(store.meeting, grid.totalCounts);
    renderPresenting(store.meeting, grid.presenters);
    summary.follow(store.meeting);
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

const summary = new AttendanceSummary({
  section: document.getElementById("attendance-summary"),
  figures: document.getElementById("summary-figures"),
  rows: document.getElementById("summary-rows"),
  url: app.dataset.attendanceUrl,
});

// Initial state from the page.
const initial = readJsonScript("initial-roster") || {};
store.replace(initial.meeting || null, initial.attendees || []);
const initialAttendance = readJsonScript("initial-attendance");
if (initialAttendance && initial.meeting) summary.render(initialAttendance, initial.meeting.seq);
grid.render();
window.addEventListener("scroll", () => grid.schedule(), { passive: true });
window.addEventListener("resize", () => grid.schedule(), { passive: true });
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
  filtersInView();
  grid.invalidate();
});
document.getElementById("filter-search").addEventListener("input", (ev) => {
  viewState.query = ev.target.value.trim().toLowerCase();
  filtersInView();
  grid.invalidate();
});
/** A new filter shows its first rows: bring the filters back when the page is scrolled past them. */
function filtersInView() {
  if (form.getBoundingClientRect().top < 0) form.scrollIntoView({ block: "start" });
}

const DEFAULT_DIR = { name: 1, presence: 1, joined: 1, time: -1, drops: -1 };
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

// The family panel (a primary's): its figures from the socket's family frames, computed by the
// server once per family per batch; hidden while the meeting has no replica.
const familyPanel = {
  section: document.getElementById("family-panel"),
  joined: document.getElementById("family-joined"),
  peak: document.getElementById("family-peak"),
  count: document.getElementById("family-replicas"),
  rows: document.getElementById("family-rows"),
  names: new Map(), // replica meeting_id -> externalMeetingId, as first rendered
};
for (const m of (readJsonScript("initial-family") || {}).members || []) {
  familyPanel.names.set(m.meeting_id, m.external_meeting_id || "");
}

function applyFamily(msg) {
  if (msg.primary_meeting_id !== meetingId) return;
  const { section, rows, names } = familyPanel;
  section.hidden = msg.replicas.length === 0;
  setText(familyPanel.joined, String(msg.family_joined));
  setText(familyPanel.peak, String(msg.family_peak_joined));
  setText(familyPanel.count, String(msg.replicas.length));
  rows.replaceChildren(
    ...msg.replicas.map((r) =>
      el(
        "tr",
        { dataset: { replicaId: r.meeting_id } },
        el(
          "th",
          { scope: "row" },
          el("a", { href: `/meetings/${encodeURIComponent(r.meeting_id)}/`, text: names.get(r.meeting_id) || r.meeting_id }),
        ),
        el("td", { className: "num joined", text: String(r.joined) }),
      ),
    ),
  );
}

feed = new LiveFeed({
  path: app.dataset.wsPath || "/ws/dashboard/",
  meetings: [meetingId],
  attendees: true,
  // A replica has no family of its own; any other meeting may become a primary while open.
  families: () => (store.meeting && store.meeting.primary_meeting_id ? [] : [meetingId]),
  onFamily: applyFamily,
  awaitSync: [meetingId],
  staleTargets: [
    familyPanel.section,
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
window.rosterDetail = { feed, store, grid, viewState, timeline, summary, applyMessage };

// The attendance timeline: one SVG lane per attendee (label on the left), present intervals as
// pale bars (hatched while still open), video and sharing as solid strips along the lane's bottom
// and top edges, drops as markers, a time axis on top; the page's legend names each mark.
// Lanes follow the attendee table's current filter and order, capped at MAX_LANES so a meeting
// of 10,000 attendees does not freeze the page. Refetched at most once every 2 s while live.

import { HttpError, fetchJson, formatClock, formatDuration, setText } from "./live.js";

const SVG_NS = "http://www.w3.org/2000/svg";
export const MAX_LANES = 200;

const LABEL_W = 190;
const AXIS_H = 26;
const LANE_H = 22;
const PAD_R = 16;
const PAD_B = 6;
const LABEL_CHARS = 26;

const STEPS = [
  1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 2 * 60e3, 5 * 60e3, 10 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3,
  2 * 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 24 * 3600e3,
];

function svg(tag, attrs = null, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function svgTitle(text) {
  return svg("title", null, text);
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

// Tooltips: thousands per draw, so a plain HH:MM:SS (Intl formatting costs ~20x more).
const p2 = (n) => (n < 10 ? `0${n}` : String(n));
function hms(ms) {
  const d = new Date(ms);
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

export class Timeline {
  /**
   * options: url, note (element for notes), now() (server time), laneOrder() (attendee ids in
   * table order, filtered), isFiltered(), isLive(), minIntervalMs (default 2000).
   */
  constructor(container, options) {
    this.container = container;
    this.url = options.url;
    this.noteEl = options.note || null;
    this.now = options.now || (() => Date.now());
    this.laneOrder = options.laneOrder || null;
    this.isFiltered = options.isFiltered || (() => false);
    this.isLive = options.isLive || (() => true);
    this.onData = options.onData || null; // called with each fetched timeline (repair marks)
    this.minIntervalMs = options.minIntervalMs ?? 2000;
    this.interval = this.minIntervalMs; // grows if fetches are slow (big meetings)
    this.data = null;
    this.lanesById = new Map();
    this.inFlight = false;
    this.pending = false;
    this.timer = null;
    this.renderTimer = null;
    this.lastFetchAt = 0;
    this.lastFetchMs = 0;
    this.lastRenderMs = 0;
    this.width = 0;

    if ("ResizeObserver" in window) {
      new ResizeObserver(() => {
        if (this.container.clientWidth !== this.width) this.laneOrderChanged();
      }).observe(this.container);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.pending && !this.inFlight) this.scheduleRefresh();
    });
    // Open bars grow towards "now": redraw (no fetch) every 5 s while live.
    setInterval(() => {
      if (this.data && this.isLive() && !document.hidden && this.hasOpen) this.render();
    }, 5000);
  }

  /** Refetch soon: throttled to one fetch per interval (trailing edge), never overlapping. */
  scheduleRefresh(immediate = false) {
    if (!this.url) return;
    if (this.inFlight || document.hidden) {
      this.pending = true;
      return;
    }
    if (this.timer) return;
    const wait = immediate ? 0 : Math.max(0, this.lastFetchAt + this.interval - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh();
    }, wait);
  }

  async refresh() {
    if (!this.url) return;
    if (this.inFlight) {
      this.pending = true;
      return;
    }
    this.inFlight = true;
    this.pending = false;
    const t0 = performance.now();
    try {
      const data = await fetchJson(this.url);
      this.setData(data);
      this.render();
      if (this.onData) this.onData(this.data);
    } catch (err) {
      console.warn("roster: timeline fetch failed", err);
      const why = err instanceof HttpError ? `HTTP ${err.status}` : "network error";
      this.setNote(`Timeline unavailable (${why}); retrying with the next update.`);
    } finally {
      this.inFlight = false;
      this.lastFetchAt = Date.now();
      this.lastFetchMs = performance.now() - t0;
      // Big meetings: keep the page responsive by spacing fetches to ~4x their own cost.
      this.interval = Math.max(this.minIntervalMs, Math.min(30000, 4 * this.lastFetchMs));
      if (this.pending) {
        this.pending = false;
        this.scheduleRefresh();
      }
    }
  }

  setData(data) {
    this.data = data && Array.isArray(data.lanes) ? data : { lanes: [] };
    this.lanesById = new Map();
    for (const lane of this.data.lanes) {
      if (lane && typeof lane.attendee_id === "string") this.lanesById.set(lane.attendee_id, lane);
    }
  }

  /** The table's filter or order changed: redraw lanes soon (no fetch). */
  laneOrderChanged() {
    if (!this.data) return;
    clearTimeout(this.renderTimer);
    this.renderTimer = setTimeout(() => this.render(), 250);
  }

  setNote(text) {
    if (this.noteEl) setText(this.noteEl, text);
  }

  /** Lanes to draw: the table's order and filter; lanes unknown to the table go last. */
  selectLanes() {
    const lanes = [];
    let matching = 0;
    if (this.laneOrder) {
      const seen = new Set();
      for (const id of this.laneOrder()) {
        const lane = this.lanesById.get(id);
        if (!lane) continue;
        seen.add(id);
        matching += 1;
        if (lanes.length < MAX_LANES) lanes.push(lane);
      }
      if (!this.isFiltered()) {
        for (const lane of this.data.lanes) {
          if (seen.has(lane.attendee_id)) continue;
          matching += 1;
          if (lanes.length < MAX_LANES) lanes.push(lane);
        }
      }
    } else {
      matching = this.data.lanes.length;
      lanes.push(...this.data.lanes.slice(0, MAX_LANES));
    }
    return { lanes, matching };
  }

  /**
   * The time axis: from the meeting's first event to its last, extended to "now" while the
   * meeting is live or any interval is still open (the server's "end" is the latest event).
   */
  domain(lanes, now) {
    let t0 = typeof this.data.start === "number" ? this.data.start : Infinity;
    let t1 = typeof this.data.end === "number" ? this.data.end : -Infinity;
    let open = false;
    for (const lane of lanes) {
      for (const s of lane.segments || []) {
        if (typeof s.start === "number") {
          t0 = Math.min(t0, s.start);
          t1 = Math.max(t1, s.start);
        }
        if (typeof s.end === "number") t1 = Math.max(t1, s.end);
        else open = true;
      }
      for (const d of lane.drops || []) {
        if (typeof d === "number") {
          t0 = Math.min(t0, d);
          t1 = Math.max(t1, d);
        }
      }
    }
    const live = open || this.isLive();
    if (live) t1 = Math.max(t1, now);
    if (!Number.isFinite(t0)) t0 = Number.isFinite(t1) ? t1 - 60e3 : now - 60e3;
    if (!Number.isFinite(t1) || t1 <= t0) t1 = t0 + 60e3;
    return { t0, t1, open, live };
  }

  render() {
    const started = performance.now();
    clearTimeout(this.renderTimer);
    if (!this.data) return;
    const { lanes, matching } = this.selectLanes();
    const total = this.data.lanes.length;
    const now = this.now();
    const { t0, t1, open, live } = this.domain(lanes, now);
    this.hasOpen = open;

    const width = Math.max(480, this.container.clientWidth || 900);
    this.width = this.container.clientWidth;
    const plotW = width - LABEL_W - PAD_R;
    const height = AXIS_H + Math.max(1, lanes.length) * LANE_H + PAD_B;
    const x = (t) => LABEL_W + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * plotW;

    const root = svg("svg", {
      class: "timeline-svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Attendance timeline, ${lanes.length} of ${matching} attendees, ${formatClock(t0)} to ${formatClock(t1)}`,
    });

    // Axis and grid.
    const axis = svg("g", { class: "axis" });
    const span = t1 - t0;
    const step = STEPS.find((s) => span / s <= Math.max(2, plotW / 90)) || STEPS[STEPS.length - 1];
    const tz = new Date(t0).getTimezoneOffset() * 60e3;
    const fmt = step < 60e3 ? (t) => formatClock(t) : (t) => hm.format(new Date(t));
    for (let t = Math.ceil((t0 - tz) / step) * step + tz; t <= t1; t += step) {
      const tx = x(t);
      axis.append(
        svg("line", { class: "grid", x1: tx, x2: tx, y1: AXIS_H - 4, y2: height - PAD_B }),
        svg("text", { class: "tick", x: tx, y: AXIS_H - 9, "text-anchor": "middle" }, fmt(t)),
      );
    }
    axis.append(svg("line", { class: "axis-line", x1: LABEL_W, x2: LABEL_W + plotW, y1: AXIS_H - 4, y2: AXIS_H - 4 }));
    root.append(axis);

    // Bars of one kind across all lanes are one <path> each (a few elements instead of
    // thousands: SVG element creation dominates the cost). Each lane gets a label and an
    // invisible hit area whose <title> summarises the lane.
    const d = { present: [], open: [], video: [], sharing: [], drop: [], repair: [] };
    const r1 = (v) => Math.round(v * 10) / 10;
    const bar = (list, x1, x2, top, h) => {
      const w = Math.max(1.5, x2 - x1);
      list.push(`M${r1(x1)} ${top}h${r1(w)}v${h}h${r1(-w)}z`);
    };
    const labels = svg("g", { class: "labels" });
    const hits = svg("g", { class: "hits" });
    const stripes = svg("g", { class: "stripes" });
    lanes.forEach((lane, i) => {
      const y = AXIS_H + i * LANE_H;
      if (i % 2 === 1) stripes.append(svg("rect", { class: "stripe", x: 0, y, width, height: LANE_H }));
      const name =
        typeof lane.external_user_id === "string" && lane.external_user_id !== ""
          ? lane.external_user_id
          : String(lane.attendee_id);
      const label = svg("text", { class: "lane-label", x: LABEL_W - 8, y: y + LANE_H / 2 + 4, "text-anchor": "end" });
      label.textContent = truncate(name, LABEL_CHARS);
      labels.append(label);
      const total = { present: 0, video: 0, sharing: 0 };
      let intervals = 0;
      let open = false;
      for (const seg of lane.segments || []) {
        if (typeof seg.start !== "number") continue;
        const isOpen = typeof seg.end !== "number";
        const end = isOpen ? Math.max(now, seg.start) : seg.end;
        const x1 = x(seg.start);
        const x2 = x(end);
        if (seg.kind === "present") {
          bar(isOpen ? d.open : d.present, x1, x2, y + 2, LANE_H - 4);
          intervals += 1;
          open = open || isOpen;
        } else if (seg.kind === "video") bar(d.video, x1, x2, y + LANE_H - 7, 5);
        else if (seg.kind === "sharing") bar(d.sharing, x1, x2, y + 2, 5);
        else continue;
        total[seg.kind] += end - seg.start;
      }
      const drops = (lane.drops || []).filter((t) => typeof t === "number");
      const cy = y + LANE_H / 2;
      for (const t of drops) {
        const dx = r1(x(t));
        d.drop.push(`M${dx} ${cy - 6}l4 6l-4 6l-4 -6z`);
      }
      // Repairs (events reconcile synthesized from the Chime API): a hollow square, apart from
      // what Chime reported.
      const repairs = (lane.repairs || []).filter((r) => r && typeof r.at === "number");
      for (const r of repairs) {
        const rx = r1(x(r.at));
        d.repair.push(`M${rx - 4} ${cy - 4}h8v8h-8z`);
      }
      const hit = svg("rect", { class: "hit", x: 0, y, width, height: LANE_H });
      hit.setAttribute("data-attendee-id", lane.attendee_id);
      const parts = [
        `${name}`,
        `present ${formatDuration(total.present)} in ${intervals} interval${intervals === 1 ? "" : "s"}${open ? " (here now)" : ""}`,
      ];
      if (total.video) parts.push(`video ${formatDuration(total.video)}`);
      if (total.sharing) parts.push(`sharing ${formatDuration(total.sharing)}`);
      if (drops.length) parts.push(`${drops.length} drop${drops.length === 1 ? "" : "s"} (${drops.map(hms).join(", ")})`);
      for (const r of repairs) parts.push(`repaired from the Chime API: ${String(r.type)} at ${hms(r.at)}`);
      hit.append(svgTitle(parts.join("\n")));
      hits.append(hit);
    });
    // Open intervals are hatched (the legend's "still in"): a pattern, one per page.
    const hatch = svg("pattern", {
      id: "timeline-open",
      width: 6,
      height: 6,
      patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)",
    });
    hatch.append(
      svg("rect", { class: "open-base", width: 6, height: 6 }),
      svg("rect", { class: "open-stripe", width: 2.5, height: 6 }),
    );
    const defs = svg("defs");
    defs.append(hatch);
    root.append(defs, stripes);
    const paths = svg("g", { class: "bars" });
    const kinds = [
      ["present", "seg present"],
      ["open", "seg present open"],
      ["video", "seg video"],
      ["sharing", "seg sharing"],
      ["drop", "drop"],
      ["repair", "repair"],
    ];
    for (const [key, cls] of kinds) if (d[key].length) paths.append(svg("path", { class: cls, d: d[key].join("") }));
    root.append(paths, labels, hits);

    // A meeting-level repair (a synthesized MeetingEnded): a dotted line across every lane.
    for (const r of this.data.repairs || []) {
      if (!r || typeof r.at !== "number" || r.at < t0 || r.at > t1) continue;
      const rx = x(r.at);
      const line = svg("line", { class: "repair-line", x1: rx, x2: rx, y1: AXIS_H - 4, y2: height - PAD_B });
      line.append(svgTitle(`repaired from the Chime API: ${String(r.type)} at ${formatClock(r.at)}`));
      root.append(line);
    }
    if (live && now >= t0 && now <= t1) {
      const nx = x(now);
      root.append(svg("line", { class: "now-line", x1: nx, x2: nx, y1: AXIS_H - 4, y2: height - PAD_B }));
    }
    if (lanes.length === 0) {
      root.append(
        svg(
          "text",
          { class: "empty", x: LABEL_W, y: AXIS_H + LANE_H - 5 },
          total === 0 ? "No attendance recorded yet." : "No attendee matches the filters.",
        ),
      );
    }

    this.container.replaceChildren(root);

    if (matching > lanes.length) {
      const which = this.isFiltered() ? "lanes matching the filters" : "lanes";
      this.setNote(
        `Showing the first ${lanes.length.toLocaleString()} of ${matching.toLocaleString()} ${which}, in table order. ` +
          "Narrow the filters or search to see others.",
      );
    } else {
      this.setNote("");
    }
    this.lastRenderMs = performance.now() - started;
  }
}

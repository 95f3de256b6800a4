// Shared by the dashboard pages: safe DOM helpers, formatting, and LiveFeed, the websocket
// client of feed protocol v1 (shared/DESIGN.md) with a connection indicator, reconnect with
// backoff, heartbeat watchdog and per-meeting seq tracking.
//
// Everything that arrives from the server is untrusted text: these modules build the DOM with
// createElement / textContent / setAttribute only, never with HTML strings.

// ---------------------------------------------------------------------------------------------
// DOM and formatting helpers

/**
 * Create an element. attrs: {className, text, dataset: {...}, title, ...other attributes}.
 * Children may be nodes or strings (strings become text nodes).
 */
export function el(tag, attrs = null, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Set textContent only when it differs (avoids needless layout work). */
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** Parse a {{ value|json_script:"id" }} element; null when absent or unparsable. */
export function readJsonScript(id) {
  const node = document.getElementById(id);
  if (!node) return null;
  try {
    return JSON.parse(node.textContent);
  } catch (err) {
    console.error(`roster: cannot parse #${id}`, err);
    return null;
  }
}

export class HttpError extends Error {
  constructor(status, url) {
    super(`HTTP ${status} for ${url}`);
    this.status = status;
  }
}

/** GET a JSON document with the session cookie. */
export async function fetchJson(url, { signal } = {}) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw new HttpError(response.status, url);
  return response.json();
}

const pad2 = (n) => String(n).padStart(2, "0");

/** Milliseconds as H:MM:SS (M:SS under an hour). */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${m}:${pad2(s)}`;
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** Epoch ms as a local date and time, "—" for null. */
export function formatDateTime(ms) {
  return typeof ms === "number" && Number.isFinite(ms) ? dateTimeFormat.format(new Date(ms)) : "—";
}

/** Epoch ms as a local wall clock time (HH:MM:SS). */
export function formatClock(ms) {
  return typeof ms === "number" && Number.isFinite(ms) ? clockFormat.format(new Date(ms)) : "—";
}

// ---------------------------------------------------------------------------------------------
// Roster semantics used by both pages (shared/ROSTER.md)

/** "sharing" = screen_share OR content_share OR content_video. */
export function isSharing(attendee) {
  return Boolean(attendee.screen_share || attendee.content_share || attendee.content_video);
}

/** Total ms in the meeting, live: closed intervals plus the open one. */
export function liveJoinedMs(attendee, now) {
  const closed = Number(attendee.joined_ms) || 0;
  const since = attendee.joined_since;
  return typeof since === "number" ? closed + Math.max(0, now - since) : closed;
}

/** Display name: external_user_id, falling back to attendee_id. */
export function displayName(attendee) {
  const ext = attendee.external_user_id;
  return typeof ext === "string" && ext !== "" ? ext : String(attendee.attendee_id);
}

/** Badges shared by the list and the header: status, recording, transcription. */
export function statusBadge(status) {
  const value = status || "unknown";
  return el("span", { className: `badge status status-${cssToken(value)}`, text: value });
}

export function recordingBadge() {
  return el("span", { className: "badge recording", title: "A media pipeline is capturing" }, "● recording");
}

export function transcriptionBadge(status, message) {
  if (!status) return null;
  return el("span", {
    className: `badge transcription transcription-${cssToken(status)}`,
    title: message ? `Transcription ${status}: ${message}` : `Transcription ${status}`,
    text: `transcription ${status}`,
  });
}

/** Restrict a value to a safe class-name token. */
export function cssToken(value) {
  return String(value).toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

// ---------------------------------------------------------------------------------------------
// LiveFeed

const STATES = ["live", "reconnecting", "offline"];
const STATUS_TEXT = { live: "live", reconnecting: "reconnecting", offline: "offline" };

/**
 * A self-healing websocket subscription.
 *
 * options:
 *  path            ws path, e.g. "/ws/dashboard/"
 *  meetings        "*" or [meeting_id]
 *  attendees       send attendee states (false on the list page)
 *  apply(msg)      called with each accepted snapshot / changes / delta, in order
 *  resync(id)      Promise of [meeting, ...] whose state the page has just replaced from REST
 *                  (called on a seq gap; LiveFeed holds back messages meanwhile)
 *  awaitSync       meeting ids whose snapshot/changes must arrive before the page shows "live"
 *  staleTargets    elements that get data-stale="true" while the data may be stale
 *  families()      primary meeting ids whose family frames the page shows (figures only)
 *  onFamily(msg)   called with each family frame
 *  onStateChange(state)
 */
export class LiveFeed {
  constructor(options) {
    this.path = options.path || "/ws/dashboard/";
    this.meetings = options.meetings ?? "*";
    this.attendees = options.attendees !== false;
    // false: a list of thousands showing a page (docs/feed.md): the server catches up only the
    // meetings held here, and sends every other meeting's first change as it comes.
    this.snapshots = options.snapshots !== false;
    this.apply = options.apply;
    this.resync = options.resync;
    this.awaitSync = new Set(options.awaitSync || []);
    this.staleTargets = options.staleTargets || [];
    this.onStateChange = options.onStateChange || (() => {});
    this.onError = options.onError || null;
    this.families = options.families || (() => []);
    this.onFamily = options.onFamily || (() => {});

    this.deadAfterMs = options.deadAfterMs ?? 45000; // nothing received for this long = dead
    this.pingAfterMs = options.pingAfterMs ?? 25000; // quiet this long: ask for a pong
    this.backoffBaseMs = options.backoffBaseMs ?? 500;
    this.backoffCapMs = options.backoffCapMs ?? 15000;
    this.offlineAfterAttempts = options.offlineAfterAttempts ?? 5;
    this.deadAfterMsDefault = this.deadAfterMs;
    this.pingAfterMsDefault = this.pingAfterMs;

    this.held = new Map(); // meeting_id -> highest seq applied
    this.socket = null;
    this.state = null;
    this.attempt = 0; // consecutive failed connects
    this.retryTimer = null;
    this.watchdogTimer = null;
    this.syncTimer = null;
    this.lastReceived = 0;
    this.lastEventAt = null;
    this.pendingSync = new Set();
    this.resyncing = null; // Promise while a REST resync runs
    this.heldBack = []; // messages received during a resync
    this.lastResyncAt = 0;
    this.resyncMinIntervalMs = options.resyncMinIntervalMs ?? 5000;
    this.clockOffset = 0; // server time - local time, from heartbeats
    this.stopped = false;

    this.statusEl = document.getElementById("connection-status");
    this.lastEventEl = document.getElementById("last-event");
    this.bannerEl = document.getElementById("stale-banner");

    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => {
      this.setState("offline");
      if (this.socket) this.socket.close();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && !this.isOpen()) this.reconnectNow();
    });
    this.setState("reconnecting");
  }

  /** Record the seq of state the page already holds (server-rendered first paint). */
  hold(meetingId, seq) {
    if (typeof seq === "number") this.held.set(meetingId, seq);
  }

  /** Stop holding a meeting (a list row that left the screen): its next message is taken as is. */
  forget(meetingId) {
    this.held.delete(meetingId);
  }

  /** Server time now (ms), corrected by the heartbeat clock offset. */
  now() {
    return Date.now() + this.clockOffset;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.watchdogTimer);
    clearTimeout(this.syncTimer);
    if (this.socket) this.socket.close(1000, "bye");
    this.setState("offline");
  }

  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${this.path}`;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (navigator.onLine === false) {
      this.setState("offline");
      this.scheduleReconnect();
      return;
    }
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch (err) {
      console.error("roster: websocket", err);
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    this.lastReceived = Date.now();
    this.armWatchdog();
    socket.addEventListener("message", (ev) => {
      if (socket === this.socket) this.onMessage(ev.data);
    });
    socket.addEventListener("close", (ev) => {
      if (socket === this.socket) this.onClose(ev.code);
    });
    // "error" is always followed by "close"; nothing to do here.
  }

  reconnectNow() {
    if (this.stopped) return;
    this.attempt = 0;
    if (this.isOpen()) return;
    this.dropSocket();
    this.connect();
  }

  dropSocket() {
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) {
      try {
        socket.close(4000, "reconnect");
      } catch (err) {
        /* already closing */
      }
    }
  }

  onClose(code = 0) {
    this.socket = null;
    clearTimeout(this.watchdogTimer);
    clearTimeout(this.syncTimer);
    // A connection that lived a while starts the backoff afresh; one that keeps dying right
    // after its hello (a server refusing us) keeps backing off.
    if (this.helloAt && Date.now() - this.helloAt > 5000) this.attempt = 0;
    this.helloAt = 0;
    // 4401: the server no longer knows us (session gone); 4403: our access ended (the error
    // "revoked" before it says whose: a host link, or the account). Keep retrying slowly, show offline.
    this.signedOut = code === 4401 || code === 4403;
    this.linkEnded = code === 4403 && this.revokedCredential !== "user";
    this.accessEnded = code === 4403 && this.revokedCredential === "user";
    if (this.signedOut) this.attempt = Math.max(this.attempt, this.offlineAfterAttempts);
    this.attempt += 1;
    this.setState(this.attempt >= this.offlineAfterAttempts || navigator.onLine === false ? "offline" : "reconnecting");
    this.scheduleReconnect();
  }

  /** Exponential backoff with jitter: base * 2^attempt, capped, then 50-100% of that. */
  backoffDelay() {
    const exp = Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** Math.min(this.attempt, 16));
    return Math.round(exp / 2 + Math.random() * (exp / 2));
  }

  scheduleReconnect() {
    if (this.stopped || this.retryTimer) return;
    const delay = this.backoffDelay();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  armWatchdog() {
    clearTimeout(this.watchdogTimer);
    const quiet = Date.now() - this.lastReceived;
    if (quiet >= this.deadAfterMs) {
      console.warn("roster: no message for", quiet, "ms; reconnecting");
      this.dropSocket();
      this.onClose();
      return;
    }
    if (quiet >= this.pingAfterMs && this.isOpen() && !this.pinged) {
      this.pinged = true;
      this.send({ type: "ping" });
    }
    const next = quiet < this.pingAfterMs ? this.pingAfterMs - quiet : this.deadAfterMs - quiet;
    this.watchdogTimer = setTimeout(() => this.armWatchdog(), Math.max(250, next));
  }

  send(message) {
    if (!this.isOpen()) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  subscribe() {
    const message = { type: "subscribe", meetings: this.meetings, attendees: this.attendees };
    if (!this.snapshots) message.snapshots = false;
    const since = {};
    for (const [id, seq] of this.held) {
      if (this.meetings === "*" || this.meetings.includes(id)) since[id] = seq;
    }
    if (Object.keys(since).length) message.since = since;
    this.pendingSync = new Set(this.awaitSync);
    this.send(message);
    this.followFamilies(this.families());
    if (this.pendingSync.size === 0) {
      this.setState("live");
    } else {
      // The server answers every subscribed meeting; should it not, do not wait forever.
      clearTimeout(this.syncTimer);
      this.syncTimer = setTimeout(() => {
        if (this.pendingSync.size && this.isOpen()) {
          console.warn("roster: no snapshot/changes for", [...this.pendingSync]);
          this.pendingSync.clear();
          this.setState("live");
        }
      }, 10000);
    }
  }

  /** Family frames of these primaries from now on (each answered at once with its figures). */
  followFamilies(ids) {
    if (ids.length) this.send({ type: "subscribe", families: ids });
  }

  onMessage(raw) {
    this.lastReceived = Date.now();
    this.pinged = false;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (err) {
      console.warn("roster: bad frame", err);
      return;
    }
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "hello":
        this.helloAt = Date.now();
        if (typeof msg.heartbeat_seconds === "number" && msg.heartbeat_seconds > 0) {
          // Dead after two missed heartbeats, never sooner than the 45 s default.
          this.deadAfterMs = Math.max(this.deadAfterMsDefault, msg.heartbeat_seconds * 2000 + 5000);
          this.pingAfterMs = Math.max(this.pingAfterMsDefault, msg.heartbeat_seconds * 1000 + 5000);
        }
        this.subscribe();
        return;
      case "heartbeat":
        if (typeof msg.time === "number") {
          // Smooth the offset: one-way latency makes any one sample a little late.
          const sample = msg.time - Date.now();
          this.clockOffset = this.clockOffset === 0 ? sample : this.clockOffset * 0.7 + sample * 0.3;
        }
        return;
      case "pong":
        return;
      case "error":
        console.warn("roster: server error", msg.code, msg.message);
        if (this.statusEl) this.statusEl.title = `Server: ${msg.code || "error"} ${msg.message || ""}`.trim();
        // A meeting the server cannot serve will send no snapshot: stop waiting for it.
        if (typeof msg.meeting_id === "string") this.settle(msg.meeting_id);
        if (msg.code === "revoked") this.revokedCredential = msg.credential;
        if (this.onError) this.onError(msg);
        return;
      case "snapshot":
      case "changes":
      case "delta":
        this.onRosterMessage(msg);
        return;
      case "family":
        if (typeof msg.primary_meeting_id === "string" && Array.isArray(msg.replicas)) {
          this.markEvent();
          this.onFamily(msg);
        }
        return;
      default:
        return; // a newer server may send more types
    }
  }

  onRosterMessage(msg) {
    const meeting = msg.meeting;
    if (!meeting || typeof meeting.meeting_id !== "string") return;
    this.markEvent();
    if (this.resyncing) {
      this.heldBack.push(msg);
      return;
    }
    this.route(msg);
  }

  /** Gate one message on seq: apply, ignore (old), or start a resync (gap). */
  route(msg) {
    const id = msg.meeting.meeting_id;
    const seq = msg.meeting.seq;
    if (this.meetings !== "*" && !this.meetings.includes(id)) return;
    const held = this.held.get(id);
    if (msg.type === "snapshot") {
      // The server's whole truth for this meeting: replaces what we hold, even at a lower seq
      // (a reset database); later deltas converge from there.
      if (typeof seq === "number") this.held.set(id, seq);
      this.safeApply(msg);
      this.settle(id);
      return;
    }
    if (msg.type === "delta") {
      if (typeof seq !== "number") return;
      if (held !== undefined && seq <= held) return; // already have it
      if (held !== undefined && seq > held + 1) {
        this.startResync(id, msg);
        return;
      }
    } else if (held !== undefined && typeof seq === "number" && seq < held) {
      // Older changes than what we hold: only its fresher attendees matter, and the page's
      // apply keeps the newer attendee states by their own seq.
      this.safeApply({ ...msg, stale: true });
      this.settle(id);
      return;
    }
    if (typeof seq === "number") this.held.set(id, Math.max(seq, held ?? seq));
    this.safeApply(msg);
    if (msg.type !== "delta") this.settle(id);
  }

  safeApply(msg) {
    try {
      this.apply(msg);
    } catch (err) {
      console.error("roster: applying", msg.type, "failed", err);
    }
  }

  settle(id) {
    if (this.pendingSync.delete(id) && this.pendingSync.size === 0) {
      clearTimeout(this.syncTimer);
      if (this.isOpen()) this.setState("live");
    }
  }

  startResync(id, msg) {
    console.info("roster: seq gap for", id, "held", this.held.get(id), "got", msg.meeting.seq, "- refetching");
    this.heldBack.push(msg);
    const recent = Date.now() - this.lastResyncAt < this.resyncMinIntervalMs;
    if (!this.resync || recent) {
      // No REST fallback, or REST just answered and did not cover the gap (a lagging read):
      // reconnect instead, which re-subscribes with since and is paced by the backoff.
      console.info("roster: filling the gap by re-subscribing");
      this.heldBack = [];
      this.dropSocket();
      this.onClose();
      return;
    }
    this.lastResyncAt = Date.now();
    this.resyncing = Promise.resolve()
      .then(() => this.resync(id))
      .then(
        (meetings) => {
          for (const m of meetings || []) {
            if (m && typeof m.seq === "number") this.held.set(m.meeting_id, m.seq);
          }
          return true;
        },
        (err) => {
          console.warn("roster: resync failed, reconnecting", err);
          return false;
        },
      )
      .then((ok) => {
        this.resyncing = null;
        this.lastResyncAt = Date.now();
        const queued = this.heldBack;
        this.heldBack = [];
        if (!ok) {
          // Re-subscribing with since fills the gap through the socket instead.
          this.dropSocket();
          this.onClose();
          return;
        }
        for (let i = 0; i < queued.length; i += 1) {
          this.route(queued[i]);
          if (this.resyncing) {
            // Another gap while replaying: queue the rest behind the new resync.
            this.heldBack.push(...queued.slice(i + 1));
            return;
          }
        }
      });
  }

  markEvent() {
    this.lastEventAt = Date.now();
    if (this.lastEventEl && !this.lastEventPending) {
      // Coalesce: at most one DOM write per frame under a burst.
      this.lastEventPending = true;
      requestAnimationFrame(() => {
        this.lastEventPending = false;
        setText(this.lastEventEl, formatClock(this.lastEventAt));
        this.lastEventEl.setAttribute("datetime", new Date(this.lastEventAt).toISOString());
        this.lastEventEl.dataset.ms = String(this.lastEventAt);
      });
    }
  }

  setState(state) {
    if (!STATES.includes(state) || state === this.state) return;
    this.state = state;
    const stale = state !== "live";
    if (this.statusEl) {
      this.statusEl.dataset.state = state;
      setText(this.statusEl, STATUS_TEXT[state]);
      if (state === "live") this.statusEl.removeAttribute("title");
    }
    if (state === "live") this.everLive = true;
    if (this.bannerEl) {
      this.bannerEl.hidden = !stale;
      let text = "Reconnecting: the data below may be out of date.";
      if (state === "offline" && this.linkEnded) text = "This host link has ended: ask for a new one.";
      else if (state === "offline" && this.accessEnded) text = "Your access has ended: ask an operator.";
      else if (state === "offline" && this.signedOut) text = "Signed out: log in again to resume live updates.";
      else if (state === "offline") text = "Offline: the data below may be out of date. Retrying…";
      else if (!this.everLive) text = "Connecting to live updates…";
      setText(this.bannerEl, text);
    }
    document.documentElement.dataset.live = state;
    for (const target of this.staleTargets) {
      if (stale) target.dataset.stale = "true";
      else delete target.dataset.stale;
      target.setAttribute("aria-busy", stale ? "true" : "false");
    }
    this.onStateChange(state);
  }
}

/** Run fn at most once per animation frame, however often it is requested. */
export function frameScheduler(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame((t) => {
      pending = false;
      fn(t);
    });
  };
}

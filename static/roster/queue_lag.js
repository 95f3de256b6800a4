// The queue lag warning in the header: server-rendered on first paint, then refreshed every
// data-poll-seconds from /api/queue-lag. The server warns when the oldest message the drains
// last received is older than QUEUE_LAG_WARN_SECONDS, or when messages wait and nothing drains;
// this script adds "backlog growing" when the total backlog rose at each of the last polls.
// Text only (textContent), never HTML.

const GROWING_AFTER = 3; // consecutive rises

const node = document.getElementById("queue-lag");

if (node) {
  const url = node.dataset.url || "/api/queue-lag";
  const pollMs = Math.max(2, Number(node.dataset.pollSeconds) || 10) * 1000;
  const backlogs = [];
  let timer = null;
  let polling = false;
  let stopped = false;

  const render = (data) => {
    const parts = [];
    if (data.message) parts.push(String(data.message));
    if (typeof data.backlog === "number") {
      backlogs.push(data.backlog);
      if (backlogs.length > GROWING_AFTER + 1) backlogs.shift();
      const growing =
        backlogs.length === GROWING_AFTER + 1 && backlogs.every((n, i) => i === 0 || n > backlogs[i - 1]);
      if (growing && !data.message) parts.push(`Backlog growing: ${data.backlog} waiting`);
      else if (growing) parts.push("backlog growing");
    } else {
      backlogs.length = 0;
    }
    const text = parts.join(" · ");
    if (node.textContent !== text) node.textContent = text;
    node.hidden = text === "";
  };

  const poll = async () => {
    timer = null;
    if (polling || stopped) return;
    polling = true;
    try {
      const response = await fetch(url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (response.status === 401 || response.status === 403) stopped = true; // signed out
      else if (response.ok) render(await response.json());
    } catch (err) {
      console.warn("roster: queue lag", err);
    } finally {
      polling = false;
    }
    schedule();
  };

  const schedule = () => {
    if (timer === null && !stopped && document.visibilityState !== "hidden") timer = setTimeout(poll, pollMs);
  };

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && timer === null && !polling) poll();
  });
  schedule();
}

// The fleet panel: every worker of every host, refreshed every few seconds
// from <prefix>/fleet (the same JSON as GET <prefix>/api/fleet), lagging ones
// highlighted. Without JavaScript the panel shows the fleet as the page loaded.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("fleet");
  if (!panel) {
    return;
  }
  const rows = document.getElementById("fleet-rows");
  const summary = document.getElementById("fleet-summary");
  const REFRESH_MS = 2000;
  const TIMEOUT_MS = 5000; // a worker that hangs must not freeze the panel

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function show(fleet) {
    const c = fleet.counts;
    summary.textContent =
      `${c.workers} worker(s) on ${c.hosts} host(s), head revision ${fleet.head}:` +
      ` ${c.ok} ok, ${c.lagging} lagging, ${c.gone} gone`;
    const fresh = [];
    for (const w of fleet.workers) {
      const row = document.createElement("tr");
      row.className = `worker-${w.state}`;
      row.dataset.host = w.host;
      row.dataset.pid = String(w.pid);
      row.dataset.state = w.state;
      for (const text of [
        w.host,
        String(w.pid),
        String(w.revision),
        w.state,
        `${w.channel} ${w.connected ? "up" : "down"}`,
        `${w.age.toFixed(1)} s ago`,
        w.version || "-",
        w.reasons.join("; "),
      ]) {
        row.appendChild(cell(text));
      }
      fresh.push(row);
    }
    rows.replaceChildren(...fresh);
    panel.dataset.updated = String(fleet.generated_at);
  }

  async function refresh() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(panel.dataset.url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        signal: abort.signal,
      });
      if (response.ok) {
        show(await response.json());
      } else {
        summary.textContent = `The fleet cannot be read now (HTTP ${response.status}).`;
      }
    } catch (error) {
      summary.textContent = "The fleet cannot be read now (no answer).";
    } finally {
      clearTimeout(timer);
    }
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
});

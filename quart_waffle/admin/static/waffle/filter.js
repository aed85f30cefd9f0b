// Search and filters as you type: the same rules as the server's query string
// (words in key, description or group; one group; changed from default; read
// at start-up), applied by hiding rows, so the page is never left and unsaved
// edits stay. Without JavaScript the Filter button asks the server instead.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filter-form");
  const settings = document.getElementById("settings-form");
  if (!form || !settings) {
    return;
  }
  const query = document.getElementById("filter-q");
  const group = document.getElementById("filter-group");
  const changed = document.getElementById("filter-changed");
  const restart = document.getElementById("filter-restart");
  const status = document.getElementById("filter-status");
  const groups = Array.from(settings.querySelectorAll("details.group"));
  const rows = groups.map((details) => ({
    details,
    count: details.querySelector("summary .count"),
    settings: Array.from(details.querySelectorAll(".setting")).map((element) => ({
      element,
      text: element.dataset.text,
      changed: element.dataset.changed === "true",
      restart: element.dataset.restart === "true",
    })),
  }));
  const total = status.dataset.total || String(rows.reduce((n, g) => n + g.settings.length, 0));

  function apply() {
    const words = query.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const g of rows) {
      const groupShown = group.value === "" || g.details.dataset.group === group.value;
      let inGroup = 0;
      for (const s of g.settings) {
        const match =
          groupShown &&
          (!changed.checked || s.changed) &&
          (!restart.checked || s.restart) &&
          words.every((word) => s.text.includes(word));
        s.element.hidden = !match;
        inGroup += match ? 1 : 0;
      }
      g.details.hidden = inGroup === 0;
      g.count.textContent = `(${inGroup})`;
      if (inGroup > 0 && words.length > 0) {
        g.details.open = true; // a match is never hidden in a collapsed group
      }
      shown += inGroup;
    }
    status.textContent = `Showing ${shown} of ${total} settings`;
    // a save or reset comes back to this view
    const view = {
      q: query.value.trim(),
      group: group.value,
      changed: changed.checked ? "1" : "",
      restart: restart.checked ? "1" : "",
    };
    for (const input of document.querySelectorAll("input[data-view]")) {
      input.value = view[input.dataset.view];
    }
    form.dataset.shown = String(shown);
  }

  let pending = 0;
  query.addEventListener("input", () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(apply);
  });
  for (const input of [group, changed, restart]) {
    input.addEventListener("change", apply);
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // already applied; leaving would lose unsaved edits
    apply();
  });
  // "/" anywhere but in a field goes to the search; Escape in it clears it
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      query.focus();
    } else if (event.key === "Escape" && event.target === query && query.value) {
      query.value = "";
      apply();
    }
  });
  const collapse = document.getElementById("collapse-all");
  const expand = document.getElementById("expand-all");
  collapse.addEventListener("click", () => groups.forEach((d) => (d.open = false)));
  expand.addEventListener("click", () => groups.forEach((d) => (d.open = true)));
  collapse.hidden = false;
  expand.hidden = false;
  if (query.value || group.value || changed.checked || restart.checked) {
    apply();
  }
  form.dataset.filterReady = "true";
});

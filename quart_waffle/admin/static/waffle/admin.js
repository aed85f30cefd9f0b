// Review before save: list what the form would change, then submit on confirm.
// Without JavaScript the form saves directly; the server validates either way.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("settings-form");
  if (!form) {
    return;
  }
  const review = document.getElementById("review");
  const rows = document.getElementById("review-rows");
  const empty = document.getElementById("review-empty");
  const confirm = document.getElementById("confirm");
  const save = document.getElementById("save");

  function currentText(setting) {
    const input = setting.querySelector("input:not([type=hidden]), select, textarea");
    if (input.type === "checkbox") {
      return input.checked ? "true" : "false";
    }
    return input.value;
  }

  function changes() {
    const found = [];
    for (const setting of form.querySelectorAll(".setting")) {
      const secret = setting.dataset.secret === "true";
      const text = currentText(setting);
      if (secret ? text !== "" : text !== setting.dataset.original) {
        found.push({
          key: setting.dataset.key,
          before: secret ? "********" : setting.dataset.original,
          after: secret ? "(new secret, hidden)" : text,
        });
      }
    }
    return found;
  }

  form.addEventListener("submit", (event) => {
    if (event.submitter === confirm) {
      return;
    }
    event.preventDefault();
    rows.replaceChildren();
    const found = changes();
    for (const change of found) {
      const row = document.createElement("tr");
      row.dataset.key = change.key;
      for (const text of [change.key, change.before, change.after]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      rows.appendChild(row);
    }
    empty.hidden = found.length !== 0;
    confirm.hidden = found.length === 0;
    review.hidden = false;
    save.hidden = true;
    review.scrollIntoView();
  });

  document.getElementById("review-back").addEventListener("click", () => {
    review.hidden = true;
    save.hidden = false;
  });
  form.dataset.reviewReady = "true";
});

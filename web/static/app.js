// Small behaviours of every page: no double submits, menus that close.
(function () {
  "use strict";

  // A form submits once: a double click or a second Enter does nothing.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.submitting === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    // after the browser has collected the clicked button's value
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) {
        b.classList.add("is-busy");
        b.disabled = true;
      });
    }, 0);
  }, true);

  // Back/forward cache: a restored page may submit again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitting]").forEach(function (form) {
      delete form.dataset.submitting;
      form.querySelectorAll("button.is-busy").forEach(function (b) {
        b.classList.remove("is-busy");
        b.disabled = false;
      });
    });
  });

  // Close the "新建" menu on a click elsewhere or Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) { menu.removeAttribute("open"); }
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (m) { m.removeAttribute("open"); });
    }
  });

  // The task list refreshes itself (new tasks, counts, countdowns) unless the user is busy on it.
  var refreshing = document.querySelector("[data-autorefresh]");
  if (refreshing) {
    var seconds = parseInt(refreshing.dataset.autorefresh, 10) || 60;
    window.setInterval(function () {
      var active = document.activeElement;
      var busy = active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
      if (!busy && !document.querySelector("details[open], form[data-submitting]") && !document.hidden) {
        window.location.reload();
      }
    }, seconds * 1000);
  }

  // A filter that applies as soon as it is chosen (the form's button is for browsers without script).
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.matches && field.matches("[data-autosubmit]") && field.form) { field.form.submit(); }
  });

  // "Back" on error pages: the previous page when there is one, else the link's own target.
  document.querySelectorAll("[data-history-back]").forEach(function (link) {
    link.addEventListener("click", function (event) {
      if (window.history.length > 1) {
        event.preventDefault();
        window.history.back();
      }
    });
  });

  // Put the cursor on the first field with an error.
  var invalid = document.querySelector(".has-error input, .has-error select, .has-error textarea");
  if (invalid) { invalid.focus(); }
})();

// The "显示" (show) action next to a masked value: asks the server for the one value (the server
// writes an audit line) and shows it in place. Without JavaScript the form opens a page with it.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-reveal]")) {
      return;
    }
    event.preventDefault();
    var holder = form.parentElement;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: {"X-Requested-With": "fetch", "Accept": "application/json"}
    }).then(function (response) {
      if (!response.ok) {
        throw new Error(String(response.status));
      }
      return response.json();
    }).then(function (data) {
      var shown = holder.querySelector("[data-masked]");
      if (shown) {
        shown.textContent = data.text;
        shown.classList.add("revealed-value");
        shown.removeAttribute("data-masked");
      }
      form.remove();
    }).catch(function () {
      delete form.dataset.submitting;
      form.querySelectorAll("button").forEach(function (b) {
        b.disabled = false;
        b.classList.remove("is-busy");
      });
    });
  });
})();

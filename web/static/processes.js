// Process pages: a BPMN diagram with the number of running instances waiting at each element, a
// refused diagram with the refused element marked, and a decision table (bpmn-js / dmn-js viewers).
(function () {
  "use strict";

  function readData(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function done(container, ok) {
    var status = container.querySelector(".diagram-status");
    if (ok) {
      if (status) { status.remove(); }
    } else if (status) {
      status.textContent = container.dataset.errorText || "—";
    }
    container.dataset.rendered = ok ? "true" : "error";
  }

  function fit(viewer) {
    var canvas = viewer.get("canvas");
    var scale = canvas.zoom("fit-viewport", "auto");
    canvas.zoom(Math.min(scale * 0.92, 1.2), "auto");
    return canvas;
  }

  function badge(kind, count, label) {
    var node = document.createElement("div");
    node.className = "activity-badge activity-" + kind;
    node.textContent = String(count);
    node.title = label + ": " + count;
    return node;
  }

  function showActivity(viewer, activity, labels) {
    var overlays = viewer.get("overlays");
    var registry = viewer.get("elementRegistry");
    Object.keys(activity).forEach(function (elementId) {
      if (!registry.get(elementId)) { return; }
      var counts = activity[elementId];
      var box = document.createElement("div");
      box.className = "activity-overlay";
      box.dataset.element = elementId;
      ["tasks", "timers", "messages"].forEach(function (kind) {
        if (counts[kind]) { box.appendChild(badge(kind, counts[kind], labels[kind] || kind)); }
      });
      overlays.add(elementId, "activity", { position: { bottom: 10, right: 10 }, html: box });
    });
  }

  function showRefusal(viewer, elementId, message) {
    var registry = viewer.get("elementRegistry");
    if (!elementId || !registry.get(elementId)) { return false; }
    viewer.get("canvas").addMarker(elementId, "refused");
    var note = document.createElement("div");
    note.className = "refusal-note";
    note.dataset.element = elementId;
    note.textContent = message;
    viewer.get("overlays").add(elementId, "refusal", { position: { top: -8, left: 0 }, html: note });
    return true;
  }

  function bpmn(containerId, dataId) {
    var container = document.getElementById(containerId);
    var data = readData(dataId);
    if (!container || !data) { return; }
    if (typeof window.BpmnJS !== "function") { done(container, false); return; }
    var load = data.xml ? Promise.resolve(data.xml) : fetch(data.xmlUrl, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      });
    load.then(function (xml) {
      var viewer = new window.BpmnJS({ container: container });
      return viewer.importXML(xml).then(function () {
        fit(viewer);
        if (data.activity) { showActivity(viewer, data.activity, data.labels || {}); }
        if (data.refused !== undefined) {
          container.dataset.marked = showRefusal(viewer, data.refused, data.message) ? "true" : "false";
        }
        done(container, true);
      });
    }).catch(function () { done(container, false); });
  }

  function dmn(container) {
    if (typeof window.DmnJS !== "function") { done(container, false); return; }
    fetch(container.dataset.xmlUrl, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (xml) {
        var viewer = new window.DmnJS({ container: container });
        return viewer.importXML(xml).then(function () {
          var wanted = container.dataset.decision;
          var view = viewer.getViews().filter(function (v) {
            return v.element && v.element.id === wanted && v.type !== "drd";
          })[0];
          return view ? viewer.open(view) : null;
        }).then(function () { done(container, true); });
      })
      .catch(function () { done(container, false); });
  }

  bpmn("process-diagram", "process-diagram-data");
  bpmn("refused-diagram", "refused-diagram-data");
  var decision = document.getElementById("decision-view");
  if (decision) { dmn(decision); }
})();

// Renders the BPMN diagrams of a page with bpmn-js (NavigatedViewer, global BpmnJS) and marks the
// path taken (green), the active elements (teal) and the current task (amber).
(function () {
  "use strict";

  function mark(viewer, data, current) {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var done = new Set(data.path || []);
    var active = new Set(data.active || []);
    registry.forEach(function (element) {
      var id = element.id;
      if (element.type === "bpmn:SequenceFlow") {
        var bo = element.businessObject;
        var from = bo.sourceRef && bo.sourceRef.id;
        var to = bo.targetRef && bo.targetRef.id;
        if (done.has(from) && (done.has(to) || active.has(to))) { canvas.addMarker(id, "hl-done"); }
        return;
      }
      if (element.type === "label" || !element.businessObject) { return; }
      if (id === current) { canvas.addMarker(id, "hl-current"); }
      else if (active.has(id)) { canvas.addMarker(id, "hl-active"); }
      else if (done.has(id)) { canvas.addMarker(id, "hl-done"); }
    });
  }

  function render(container) {
    var status = container.querySelector(".diagram-status");
    var fail = function () {
      container.dataset.rendered = "error";
      if (status) { status.textContent = container.dataset.errorText || "流程图无法显示"; }
    };
    if (typeof window.BpmnJS !== "function") { fail(); return; }
    fetch(container.dataset.diagramUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        var viewer = new window.BpmnJS({ container: container });
        return viewer.importXML(data.xml).then(function () {
          mark(viewer, data, container.dataset.current);
          var canvas = viewer.get("canvas");
          var scale = canvas.zoom("fit-viewport", "auto");
          canvas.zoom(Math.min(scale * 0.92, 1.2), "auto");  // a margin around the drawing
          if (status) { status.remove(); }
          container.dataset.rendered = "true";
        });
      })
      .catch(fail);
  }

  document.querySelectorAll(".diagram[data-diagram-url]").forEach(render);
})();

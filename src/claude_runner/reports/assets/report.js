// Filter by status, and transcripts moved into the page only when a task is opened.
(function () {
  "use strict";
  var body = document.body;
  document.querySelectorAll(".filters button").forEach(function (button) {
    button.addEventListener("click", function () {
      document.querySelectorAll(".filters button").forEach(function (b) {
        b.classList.toggle("on", b === button);
      });
      var status = button.dataset.show;
      body.dataset.filter = status;
      document.querySelectorAll("[data-status]").forEach(function (el) {
        el.hidden = status !== "all" && el.dataset.status !== status;
      });
      document.querySelectorAll("svg.graph .node").forEach(function (node) {
        var cls = node.getAttribute("class") || "";
        node.classList.toggle("dim", status !== "all" && cls.indexOf("st-" + status) < 0);
      });
    });
  });
  function fill(details) {
    var tpl = details.querySelector("template");
    if (tpl) { details.querySelector(".transcript").appendChild(tpl.content); tpl.remove(); }
  }
  document.querySelectorAll("details.task").forEach(function (details) {
    details.addEventListener("toggle", function () { if (details.open) fill(details); });
    if (details.open) { fill(details); }
  });
  function openHash() {
    var hash = location.hash.slice(1);
    if (hash.indexOf("status=") === 0) {  // a link to one status: #status=failed
      var button = document.querySelector('.filters button[data-show="' + hash.slice(7) + '"]');
      if (button) { button.click(); }
      return;
    }
    var target = hash && document.getElementById(hash);
    if (target && target.tagName === "DETAILS") { target.open = true; fill(target); }
  }
  window.addEventListener("hashchange", openHash);
  openHash();
})();

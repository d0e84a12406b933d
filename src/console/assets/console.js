// keygate console: optional enhancements. Every page works without this file.
(function () {
  "use strict";
  // Confirm dialogs: a button with data-confirm asks first; the answer is sent as
  // confirmed=yes, so the server skips its own confirmation page.
  document.addEventListener("submit", function (ev) {
    var b = ev.submitter;
    var msg = b && b.getAttribute("data-confirm");
    if (!msg) return;
    if (!window.confirm(msg)) { ev.preventDefault(); return; }
    var f = ev.target, c = f.querySelector("input[name=confirmed]");
    if (!c) { c = document.createElement("input"); c.type = "hidden"; c.name = "confirmed"; f.appendChild(c); }
    c.value = "yes";
  });
  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (!el || !navigator.clipboard) return;
      navigator.clipboard.writeText(el.textContent).then(function () {
        var s = document.getElementById(b.getAttribute("data-status"));
        if (s) s.textContent = "Copied.";
      });
    });
  });
  // Templates tick their scopes.
  document.querySelectorAll("input[data-scopes]").forEach(function (t) {
    t.addEventListener("change", function () {
      if (!t.checked) return;
      t.getAttribute("data-scopes").split(" ").forEach(function (s) {
        document.querySelectorAll("input[name=scope]").forEach(function (c) { if (c.value === s) c.checked = true; });
      });
    });
  });
  // Select all rows.
  var all = document.getElementById("select-all");
  if (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=id]").forEach(function (c) { c.checked = all.checked; });
    });
  }
  // The id as typed (Chef's rule).
  var id = document.getElementById("f-id");
  if (id) {
    id.addEventListener("input", function () {
      var ok = id.value === "" || /^[a-z0-9_-]+$/.test(id.value);
      id.setCustomValidity(ok ? "" : "Use lower-case letters, digits, - and _ only.");
      var e = document.getElementById("f-id-live");
      if (e) e.textContent = ok ? "" : "Use lower-case letters, digits, - and _ only.";
    });
  }
})();

// gpt4llm annotate: keyboard shortcuts for the vote form. Plain JS, no build step.
// 1/2/3 choose A / tie / B on the highlighted criterion (then move to the next one),
// j/k or the down/up arrows move between criteria, Enter submits, Backspace = previous pair.
(function () {
  "use strict";
  var form = document.getElementById("vote-form");
  if (!form) return;
  var groups = Array.prototype.slice.call(form.querySelectorAll("fieldset.criterion"));
  var errorBox = document.getElementById("form-error");
  var current = 0;
  var values = ["left", "tie", "right"];

  function highlight(i) {
    if (!groups.length) return;
    current = Math.max(0, Math.min(groups.length - 1, i));
    groups.forEach(function (g, j) { g.classList.toggle("active", j === current); });
  }
  groups.forEach(function (g, i) {
    g.addEventListener("click", function () { highlight(i); });
    g.addEventListener("focusin", function () { highlight(i); });
    g.addEventListener("change", function () { g.classList.remove("missing"); });
  });
  // Start on the first criterion without an answer.
  var firstOpen = groups.findIndex(function (g) { return !g.querySelector("input:checked"); });
  highlight(firstOpen === -1 ? 0 : firstOpen);

  function trySubmit() {
    var missing = groups.filter(function (g) { return !g.querySelector("input:checked"); });
    groups.forEach(function (g) { g.classList.toggle("missing", missing.indexOf(g) !== -1); });
    if (missing.length) {
      errorBox.textContent = "Choose A, tie or B for: " + missing.map(function (g) {
        return g.querySelector("legend").textContent; }).join(", ") + ".";
      errorBox.hidden = false;
      highlight(groups.indexOf(missing[0]));
      return;
    }
    errorBox.hidden = true;
    var button = document.getElementById("submit-vote");
    if (button.disabled) return;
    button.disabled = true;  // no double submit; the server rejects replays anyway
    HTMLFormElement.prototype.submit.call(form);
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); trySubmit(); });

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio"))) return;
    var k = e.key;
    if (k === "1" || k === "2" || k === "3") {
      var radio = groups[current].querySelector('input[value="' + values[+k - 1] + '"]');
      radio.checked = true;
      groups[current].classList.remove("missing");
      if (current < groups.length - 1) highlight(current + 1);
      e.preventDefault();
    } else if (k === "j" || k === "ArrowDown") {
      highlight(current + 1); e.preventDefault();
    } else if (k === "k" || k === "ArrowUp") {
      highlight(current - 1); e.preventDefault();
    } else if (k === "Enter") {
      e.preventDefault(); trySubmit();
    } else if (k === "Backspace") {
      var prev = document.getElementById("prev-link");
      if (prev) { e.preventDefault(); window.location.href = prev.href; }
    }
  });
})();

// Reload's pages work without this file; it only adds copy buttons and chart
// tooltips. Served by the app itself (the Content-Security-Policy allows only
// scripts from this origin, and no inline script).
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy failed"));
      } catch (error) {
        reject(error);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  function setUpCopyButtons() {
    document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
      button.hidden = false;
      var label = button.firstChild;
      button.addEventListener("click", function () {
        copyText(button.getAttribute("data-copy")).then(
          function () { label.textContent = "Copied"; },
          function () { label.textContent = "Select and copy"; }
        );
        window.setTimeout(function () { label.textContent = "Copy"; }, 1800);
      });
    });
  }

  function setUpChartTips() {
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var figure = svg.parentNode;
      var tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.hidden = true;
      tip.setAttribute("aria-hidden", "true");
      figure.appendChild(tip);
      var active = null;
      svg.querySelectorAll("g.bar").forEach(function (bar) {
        var title = bar.querySelector("title");
        bar.addEventListener("mouseenter", function () {
          if (title) { bar.setAttribute("data-title", title.textContent); title.textContent = ""; }
          var box = bar.getBoundingClientRect();
          var frame = figure.getBoundingClientRect();
          tip.textContent = bar.getAttribute("data-tip");
          tip.hidden = false;
          var left = box.left - frame.left + box.width / 2;
          tip.style.left = Math.max(60, Math.min(frame.width - 60, left)) + "px";
          tip.style.top = (bar.querySelector(".outer").getBoundingClientRect().top - frame.top) + "px";
          if (active) { active.classList.remove("active"); }
          active = bar;
          bar.classList.add("active");
        });
        bar.addEventListener("mouseleave", function () {
          if (title && bar.hasAttribute("data-title")) { title.textContent = bar.getAttribute("data-title"); }
          tip.hidden = true;
          bar.classList.remove("active");
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setUpCopyButtons();
    setUpChartTips();
  });
})();

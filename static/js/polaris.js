// Behaviour shared by every page. Pages work without it; it only makes them better.
(function () {
  "use strict";

  // On a phone the sections scroll sideways under the top bar: start with the
  // current one in view (this script is deferred, so the nav is parsed).
  var currentSection = document.querySelector(".sidebar__nav [aria-current]");
  if (currentSection) {
    currentSection.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // Which of its ends hides sections ("start", "end"), for the CSS to fade.
  var nav = document.querySelector(".sidebar__nav");
  function markHiddenEnds() {
    var more = [];
    if (nav.scrollLeft > 1) { more.push("start"); }
    if (nav.scrollLeft + nav.clientWidth < nav.scrollWidth - 1) { more.push("end"); }
    nav.setAttribute("data-more", more.join(" "));
  }
  if (nav) {
    markHiddenEnds();
    nav.addEventListener("scroll", markHiddenEnds, { passive: true });
    window.addEventListener("resize", markHiddenEnds);
  }

  // A [data-copy] button copies the text of the element it names (a new API
  // token); it shows only where the browser lets a page write the clipboard.
  if (navigator.clipboard) {
    document.querySelectorAll("[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          button.textContent = "Copied";
        }, function () {
          button.textContent = "Select and copy it";
        });
      });
    });
  }

  // htmx does not swap 4xx/5xx answers: say so instead of failing silently.
  document.addEventListener("htmx:responseError", function () {
    var banner = document.querySelector(".request-error");
    if (banner) {
      banner.hidden = false;
      window.setTimeout(function () { banner.hidden = true; }, 8000);
    }
  });
  document.addEventListener("htmx:sendError", function () {
    var banner = document.querySelector(".request-error");
    if (banner) { banner.hidden = false; }
  });

  // A swap that takes away the control that had the focus (a filter chip's
  // remove link, "Clear all") would leave keyboard users at the top of the page:
  // the new part's [data-focus-after-swap] heading takes the focus instead, and
  // reads out what changed. Controls that survive a swap keep it by their ids.
  var focusedPart = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    focusedPart = target.id && target.contains(document.activeElement) ? target.id : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var partId = focusedPart;
    focusedPart = null;
    var focused = document.activeElement;
    if (!partId || (focused && focused !== document.body)) { return; }
    var part = document.getElementById(partId);
    var heading = part && part.querySelector("[data-focus-after-swap]");
    if (heading) { heading.focus(); }
  });

  // Live updates. A stream that broke (a web process, Redis or the database
  // restarted) may have missed events, and Redis may have lost the stored ones. So
  // once a stream is serving again ("stream-open" after an error), or the server
  // says the stored events are gone ("stream-reset"), re-read the page and put
  // its live parts (the elements with sse-swap or data-live-refresh) in place.
  var LIVE_PARTS = "[sse-swap][id], [data-live-refresh][id]";

  function refreshLiveParts(container) {
    window.fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
    }).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html");
      container.querySelectorAll(LIVE_PARTS).forEach(function (part) {
        var replacement = fresh.getElementById(part.id);
        if (!replacement) { return; }
        replacement = document.importNode(replacement, true);
        part.replaceWith(replacement);
        htmx.process(replacement);
      });
      htmx.trigger(container, "polaris:liveRefreshed");
    }).catch(function () {
      // The stream is back but the page is not: the next reconnect tries again.
      container.polarisLiveBroken = true;
    });
  }

  document.addEventListener("htmx:sseError", function (event) {
    event.target.polarisLiveBroken = true;
  });
  document.addEventListener("htmx:sseOpen", function (event) {
    var container = event.target;
    var source = event.detail.source;
    if (!source || source.polarisWatched) { return; }
    source.polarisWatched = true;
    source.addEventListener("stream-open", function () {
      if (container.polarisLiveBroken) {
        container.polarisLiveBroken = false;
        refreshLiveParts(container);
      }
    });
    source.addEventListener("stream-reset", function () {
      refreshLiveParts(container);
    });
  });
})();

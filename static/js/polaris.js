// Behaviour shared by every page. Pages work without it; it only makes them better.
(function () {
  "use strict";

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
})();

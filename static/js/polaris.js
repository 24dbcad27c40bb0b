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
    // The browser scrolls a section the keyboard reaches only when none of it
    // shows: one half under the fade would keep its name and focus ring hidden.
    nav.addEventListener("focusin", function (event) {
      event.target.scrollIntoView({ block: "nearest", inline: "nearest" });
    });
  }

  // A form sent back with errors: the keyboard starts at the first field to fix,
  // whose error its aria-describedby reads out, not at the top of the page.
  // (Filters sent by GET fall back and say so; they take no focus.)
  var invalid = document.querySelector('form[method="post"] [aria-invalid="true"]');
  if (invalid) {
    invalid.focus();
  }

  // A form posted and redirected (Save, Import, Revoke, Start): its outcome is on
  // the new page from its first paint, which screen readers do not read out, and
  // the keyboard would start over at the top. The outcome takes the focus, so it
  // is read, and the next Tab goes on from there: the element that names itself
  // the outcome ([data-focus-on-load]: a new token, a start under way), else the
  // page's first message. A page that puts the keyboard in a field by itself
  // (autofocus: sign in) keeps it there.
  function focusOutcome() {
    var outcome = document.querySelector("[data-focus-on-load]") ||
      document.querySelector(".messages > .banner");
    if (outcome) {
      outcome.setAttribute("tabindex", "-1");
      outcome.focus();
    }
  }
  if (!invalid && !document.querySelector("[autofocus]")) {
    focusOutcome();
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

  // A form whose request takes a while (a CSV import reads the whole file, a
  // start waits for the station) says it is under way once sent, and cannot be
  // sent twice meanwhile: the button pressed takes its busy label, and the
  // form's buttons are disabled (buttons only: a disabled field is not sent).
  // Back to the page from the browser's cache, it is ready again.
  document.addEventListener("submit", function (event) {
    var button = event.submitter || event.target.querySelector("button[type=submit]");
    if (!button || !button.hasAttribute("data-busy-label") || event.defaultPrevented) {
      return;
    }
    button.setAttribute("data-idle-label", button.innerHTML);
    button.textContent = button.getAttribute("data-busy-label");
    event.target.querySelectorAll("button").forEach(function (each) {
      each.disabled = true;
      each.setAttribute("data-busy-disabled", "");
    });
  });
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button[data-idle-label]").forEach(function (button) {
      button.innerHTML = button.getAttribute("data-idle-label");
      button.removeAttribute("data-idle-label");
    });
    document.querySelectorAll("button[data-busy-disabled]").forEach(function (button) {
      button.disabled = false;
      button.removeAttribute("data-busy-disabled");
    });
  });

  // A time[data-age] says when something happened ("14:05:09"); beside it, how
  // long ago, kept fresh: a page that stopped updating shows its times growing
  // old, where a server's "2 seconds ago" would stay frozen.
  function ageText(seconds) {
    if (seconds < 10) { return "just now"; }
    if (seconds < 60) { return Math.floor(seconds) + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 48 * 3600) { return Math.floor(seconds / 3600) + " h ago"; }
    return Math.floor(seconds / 86400) + " d ago";
  }

  function showAges() {
    var now = Date.now();
    document.querySelectorAll("time[data-age]").forEach(function (time) {
      var at = Date.parse(time.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      var age = time.nextElementSibling;
      if (!age || !age.classList.contains("time-age")) {
        age = document.createElement("span");
        age.className = "time-age muted";
        // A plain space: where the age does not fit beside the time it goes under
        // it whole (it does not wrap), and a stacked table cell, a flex column,
        // drops the space instead of giving it a line of its own.
        time.after(" ", age);
      }
      age.textContent = ageText((now - at) / 1000);
    });
  }
  showAges();
  window.setInterval(showAges, 5000);
  document.addEventListener("htmx:afterSettle", showAges);
  document.addEventListener("polaris:liveRefreshed", showAges);

  // htmx does not swap 4xx/5xx answers, so a request that failed leaves part of
  // the page as it was: say so instead of failing silently. A live part's
  // re-read (after an event, or timed) is no one's click: the page's live banner
  // says the page may be out of date, and the stream's next event re-reads the
  // page (live updates, below). Anything else (what a person asked for, a live
  // part on a page without a banner) gets a notice over the page, where it is
  // seen wherever the reader is, until a request succeeds.
  function liveRereadFailed(event) {
    var elt = event.detail.elt;
    var config = event.detail.requestConfig;
    var trigger = config && config.triggeringEvent;
    var container = liveContainer(elt);
    if (!container || !container.querySelector("[data-live-updates]") ||
        !elt.matches("[data-live-refresh]") ||
        (trigger && trigger.type.indexOf("sse:") !== 0)) {
      return false;
    }
    container.polarisLiveStale = true;
    showLiveState(container);
    return true;
  }
  function showRequestError(event, words) {
    var banner = document.querySelector(".request-error");
    if (!banner || liveRereadFailed(event)) { return; }
    banner.querySelector(".banner__body").textContent = words;
    banner.hidden = false;
  }
  document.addEventListener("htmx:responseError", function (event) {
    showRequestError(event, "The server could not answer, so part of this page was not updated. Try again, or reload the page.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    showRequestError(event, "The server could not be reached, so part of this page was not updated. Check your connection and try again.");
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var banner = document.querySelector(".request-error");
    if (banner && event.detail.successful) { banner.hidden = true; }
  });

  // A swap that takes away the control that had the focus (a filter chip's
  // remove link, "Clear all") would leave keyboard users at the top of the page.
  // So before a part is replaced, where the focus was in it is noted: the
  // part; the focused control's id; what it names as its successor (a start
  // notice: the Stop of the charge it becomes); and the heading that names its
  // card (a charger card's aria-labelledby), which outlives the card's controls
  // (Reserve goes once the charger is taken).
  function focusPlace(part) {
    var focused = document.activeElement;
    if (!part || !part.id || !focused || !part.contains(focused)) { return null; }
    var card = focused.closest("[aria-labelledby]");
    var named = card && part.contains(card) ? card.getAttribute("aria-labelledby") : "";
    var heir = focused.closest("[data-focus-successor]");
    return {
      partId: part.id,
      focusedId: focused.id,
      successorId: heir ? heir.getAttribute("data-focus-successor") : "",
      headingId: named.split(" ")[0],
    };
  }

  // After the replacement, if the focus was lost, it goes back to the control
  // with the same id (htmx's own swaps do this themselves), else to its
  // successor, else its card's heading, else the new part's
  // [data-focus-after-swap] heading, which reads out what changed, else what
  // the part's data-focus-fallback names (a part that can come back empty: the
  // dashboard's banner once a charge has ended).
  function refocus(place) {
    var focused = document.activeElement;
    if (!place || (focused && focused !== document.body)) { return; }
    var part = document.getElementById(place.partId);
    if (!part) { return; }
    var inPart = function (id) {
      var element = id && document.getElementById(id);
      return element && part.contains(element) ? element : null;
    };
    var target = inPart(place.focusedId) || inPart(place.successorId);
    var heading = !target && inPart(place.headingId);
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      target = heading;
    }
    target = target || part.querySelector("[data-focus-after-swap]") ||
      document.getElementById(part.getAttribute("data-focus-fallback") || "");
    if (target) { target.focus(); }
  }

  var swappedFocus = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    // An answer that swaps nothing (an error, a 204) settles nothing either:
    // its place must not wait for a later, unrelated swap.
    swappedFocus = event.detail.shouldSwap ? focusPlace(event.detail.target) : null;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var place = swappedFocus;
    swappedFocus = null;
    var focused = document.activeElement;
    if (focused && focused !== document.body) { return; }
    // A post answered with the whole page (the portal's Stop) whose control is
    // gone from it (the charge had ended): its outcome takes the focus, as after
    // a page load.
    if (event.detail.target === document.body) {
      focusOutcome();
      return;
    }
    refocus(place);
  });

  // A live region marked data-say-once (a transaction's resync notice, re-read
  // at every sync of its session) is left as it is when it comes back out of
  // band with the same words: replacing its content would make screen readers
  // say it again, every 10 s. Others say what they say each time: the filters'
  // count, applied again, tells whoever pressed Apply that it was done.
  // When its words change (a queued resync's outcome arrives) while the reader's
  // focus is in it, the focus moves to what replaced it, not to the page's top.
  var sayOnceFocused = null;
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    var words = function (node) { return node.textContent.replace(/\s+/g, " ").trim(); };
    if (target.matches("[data-say-once]") && words(event.detail.fragment) === words(target)) {
      event.detail.shouldSwap = false;
    } else if (target.matches("[data-say-once]") && target.contains(document.activeElement)) {
      sayOnceFocused = target;
    }
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    if (!sayOnceFocused) { return; }
    var outcome = sayOnceFocused.querySelector(".banner");
    sayOnceFocused = null;
    if (outcome && !outcome.contains(document.activeElement)) {
      outcome.setAttribute("tabindex", "-1");
      outcome.focus();
    }
  });

  // A part re-read by htmx or a live update comes back with its <details>
  // closed: one the reader had open (by its id) stays open, so a live update
  // does not fold away the table someone is reading.
  function openDetailsIds(root) {
    return Array.from(root.querySelectorAll("details[open][id]"), function (details) {
      return details.id;
    });
  }

  function reopenDetails(ids) {
    ids.forEach(function (id) {
      var details = document.getElementById(id);
      if (details) { details.open = true; }
    });
  }

  // Likewise a choice the reader has made and not sent yet (a reservation's
  // length) survives a live update of its card, by the control's id.
  function chosenValues(root) {
    var chosen = [];
    root.querySelectorAll("select[id]").forEach(function (select) {
      var option = select.options[select.selectedIndex];
      if (option && !option.defaultSelected) { chosen.push([select.id, select.value]); }
    });
    return chosen;
  }

  function restoreValues(chosen) {
    chosen.forEach(function (pair) {
      var select = document.getElementById(pair[0]);
      if (select) { select.value = pair[1]; }
    });
  }

  var keptBeforeSwap = { details: [], values: [] };
  document.addEventListener("htmx:beforeSwap", function (event) {
    keptBeforeSwap = {
      details: openDetailsIds(event.detail.target),
      values: chosenValues(event.detail.target),
    };
  });
  // A support agent acting as a customer sees the customer's controls, disabled
  // (the server refuses them too). The page comes so from the server; a live
  // update's HTML is rendered once for every tab watching the customer, so the
  // controls it brings are disabled here.
  document.addEventListener("htmx:load", function (event) {
    if (!document.querySelector(".is-acting")) return;
    event.detail.elt
      .querySelectorAll(".customer-only :is(button, select, input)")
      .forEach(function (control) {
        control.disabled = true;
      });
  });

  // The portal's live banner changes its figures at every sync: a screen reader
  // hears only a change of its state (charging, stopping, did not start, gone),
  // read from each banner's data-announce into one region that stays put.
  // Said a moment after the last change: a charge that starts comes in two
  // swaps close together (its banner, then the start notice gone), of which
  // only the state they leave is news.
  var ANNOUNCE_SETTLE_MS = 500;
  var announcedStates = null;
  var announceTimer = null;
  function announceBannerStates() {
    var slot = document.getElementById("active-session");
    var announcer = document.getElementById("active-session-announcer");
    if (!slot || !announcer) { return; }
    var states = Array.from(slot.querySelectorAll("[data-announce]"), function (banner) {
      return banner.getAttribute("data-announce");
    }).join(" ");
    if (announcedStates === null) {
      announcedStates = states;
      return;
    }
    window.clearTimeout(announceTimer);
    announceTimer = window.setTimeout(function () {
      if (states !== announcedStates) {
        announcer.textContent = states || "No charge in progress now.";
      }
      announcedStates = states;
    }, ANNOUNCE_SETTLE_MS);
  }
  document.addEventListener("DOMContentLoaded", announceBannerStates);
  document.addEventListener("htmx:afterSettle", announceBannerStates);
  // A resume or a reconnect re-reads the page's parts outside htmx's swaps.
  document.addEventListener("polaris:liveRefreshed", announceBannerStates);

  // A period chip brings a new usage card: its period and total are said (a
  // live re-read while charging is not: the figure moves with every sync).
  document.addEventListener("htmx:afterSettle", function (event) {
    var chip = event.detail.requestConfig && event.detail.requestConfig.elt;
    var announcer = document.getElementById("usage-announcer");
    if (!announcer || !chip || !chip.classList || !chip.classList.contains("chip")) {
      return;
    }
    var total = document.querySelector("#usage-card .stat");
    if (total) {
      announcer.textContent = total.textContent.replace(/\s+/g, " ").trim() + ".";
    }
  });

  // A confirmation (Revoke, Deactivate: details.confirm) closes with Escape too,
  // the keyboard back on the control that opened it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !event.target.closest) { return; }
    var confirm = event.target.closest("details.confirm[open]");
    if (!confirm) { return; }
    confirm.open = false;
    confirm.querySelector("summary").focus();
  });

  // A control that is under way (a Stop sent) keeps the focus, so it is
  // aria-disabled rather than disabled: it must not act again.
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest('button[aria-disabled="true"]')) {
      event.preventDefault();
    }
  }, true);

  document.addEventListener("htmx:afterSwap", function () {
    reopenDetails(keptBeforeSwap.details);
    restoreValues(keptBeforeSwap.values);
    keptBeforeSwap = { details: [], values: [] };
  });

  // Live updates. A stream that broke (a web process, Redis or the database
  // restarted) may have missed events, and Redis may have lost the stored ones. So
  // once a stream is serving again ("stream-open" after an error), or the server
  // says the stored events are gone ("stream-reset"), re-read the page and put
  // its live parts (the elements with sse-swap or data-live-refresh) in place.
  // A part that events fill (hx-swap="innerHTML", a live region) keeps its element
  // and gets the new content: screen readers announce changes to a region that
  // was there, not to a new one.
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
      var openDetails = openDetailsIds(container);
      var chosen = chosenValues(container);
      // Unlike htmx's swaps, these replacements keep no focus by themselves.
      var place = null;
      container.querySelectorAll(LIVE_PARTS).forEach(function (part) {
        place = place || focusPlace(part);
        var replacement = fresh.getElementById(part.id);
        if (!replacement) {
          // A live banner the page no longer has (the session completed while
          // paused) goes, rather than keep saying it is paused. Its slot stays
          // empty, where later re-reads put what they bring.
          var slot = part.closest(".live-banner-slot");
          if (slot) { slot.replaceChildren(); }
          return;
        }
        replacement = document.importNode(replacement, true);
        if (part.getAttribute("hx-swap") === "innerHTML") {
          part.replaceChildren.apply(part, Array.from(replacement.childNodes));
          htmx.process(part);
          return;
        }
        part.replaceWith(replacement);
        htmx.process(replacement);
      });
      reopenDetails(openDetails);
      restoreValues(chosen);
      refocus(place);
      container.polarisLiveStale = false;
      showLiveState(container);
      htmx.trigger(container, "polaris:liveRefreshed");
    }).catch(function () {
      // The stream may be fine but the page missed what it brought: it tries
      // again with the stream's next event (htmx:sseMessage below).
      container.polarisLiveStale = true;
      showLiveState(container);
    });
  }

  // A page with a live banner ([data-live-updates]) can pause its live updates
  // (WCAG 2.2.2): while paused, events change nothing on the page, and resuming
  // re-reads its live parts. The choice lasts as long as the tab
  // (sessionStorage). The banner says which state the page is in, paused,
  // disconnected (the stream broke) or stale (the stream is up but a re-read
  // failed): what its <template data-live-state="…"> says replaces the live
  // region's text.
  // One choice for the console's pages and one for the portal's (the button's
  // data-live-pause names which): an agent who paused the console does not find
  // the customer's dashboard paused, nor the other way round.
  var PAUSED_KEY = "polaris.liveUpdatesPaused.";

  function liveContainer(element) {
    return element && element.closest ? element.closest("[sse-connect]") : null;
  }

  function showLiveState(container) {
    var banner = container.querySelector("[data-live-updates]");
    if (!banner) { return; }
    var state = null;
    if (container.polarisLivePaused) {
      state = "paused";
    } else if (container.polarisLiveBroken) {
      state = "disconnected";
    } else if (container.polarisLiveStale) {
      state = "stale";
    }
    if (state === banner.getAttribute("data-live-state")) { return; }
    if (!state) {
      // Live again: the re-read has put the server's own words back.
      banner.removeAttribute("data-live-state");
      return;
    }
    banner.setAttribute("data-live-state", state);
    var words = banner.querySelector('template[data-live-state="' + state + '"]');
    var region = banner.querySelector("[role=status]");
    if (words && region) {
      // Heard whatever the updates before it were (see the console's banner
      // below); the next update is then news again.
      region.setAttribute("aria-live", "polite");
      region.removeAttribute("data-said");
      region.replaceChildren(words.content.cloneNode(true));
    }
  }

  function rememberPause(key, paused) {
    try {
      if (paused) {
        window.sessionStorage.setItem(key, "1");
      } else {
        window.sessionStorage.removeItem(key);
      }
    } catch (error) {
      // Storage refused (private mode): the pause lasts as long as the page.
    }
  }

  function pausedBefore(key) {
    try {
      return window.sessionStorage.getItem(key) === "1";
    } catch (error) {
      return false;
    }
  }

  // Bound as the page loads, and again for a button a swap brings (the portal's
  // Stop swaps the whole page in).
  function bindPauseButton(button) {
    var container = liveContainer(button);
    if (!container || button.polarisBound) { return; }
    button.polarisBound = true;
    var pauseLabel = button.textContent;
    var resumeLabel = button.getAttribute("data-resume-label");
    var key = PAUSED_KEY + button.getAttribute("data-live-pause");
    function setPaused(paused) {
      container.polarisLivePaused = paused;
      button.textContent = paused ? resumeLabel : pauseLabel;
      rememberPause(key, paused);
    }
    button.hidden = false;
    if (pausedBefore(key)) {
      setPaused(true);
      showLiveState(container);
    }
    button.addEventListener("click", function () {
      setPaused(!container.polarisLivePaused);
      if (container.polarisLivePaused || container.polarisLiveBroken) {
        // A broken stream re-reads the page once it reconnects.
        showLiveState(container);
      } else {
        refreshLiveParts(container);
      }
    });
  }
  document.querySelectorAll("[data-live-pause]").forEach(bindPauseButton);
  document.addEventListener("htmx:load", function (event) {
    event.detail.elt.querySelectorAll("[data-live-pause]").forEach(bindPauseButton);
  });

  // While paused, neither an event's HTML (sse-swap) nor the re-read it
  // triggers (hx-trigger="sse:…") reaches the page, nor a timed re-read
  // (hx-trigger="load delay:…", which htmx sends with no triggering event; what
  // a person does always has one). Resuming re-reads every live part anyway.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var container = liveContainer(event.target);
    if (container && container.polarisLivePaused) { event.preventDefault(); }
  });
  // The console's live banner reports each sync that changed sessions, every
  // few seconds while charges run. Screen readers hear it when what it says
  // changes kind (sessions updated, the sync failing, or back from failing),
  // not each new count and time, which sighted readers still see.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    var region = event.target;
    if (event.defaultPrevented || region.id !== "live-banner") { return; }
    var kind = /class="sync-failing"/.test(event.detail.data) ? "failing" : "updated";
    var repeat = kind === region.getAttribute("data-said");
    region.setAttribute("aria-live", repeat ? "off" : "polite");
    region.setAttribute("data-said", kind);
  });
  // A live update swaps without htmx:beforeSwap: what had the focus is noted
  // here instead, for the focus keeping above.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!event.defaultPrevented) {
      swappedFocus = focusPlace(event.target);
    }
  });
  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.triggeringEvent;
    var container = liveContainer(event.detail.elt);
    if (container && container.polarisLivePaused &&
        (!trigger || trigger.type.indexOf("sse:") === 0)) {
      event.preventDefault();
    }
  });
  // A part showing one session ([data-live-session], a transaction's detail)
  // re-reads itself only when the sync changed that session: the event names
  // the sessions it changed. Re-reading for every other session's reading would
  // take away a selection, or a screen reader's place, every sync.
  document.addEventListener("htmx:confirm", function (event) {
    var shown = event.detail.elt.getAttribute("data-live-session");
    var trigger = event.detail.triggeringEvent;
    if (!shown || !trigger || trigger.type !== "sse:sessions-updated") { return; }
    var data = (trigger.detail && trigger.detail.data) || "";
    var changed = /data-changed-sessions="([^"]*)"/.exec(data);
    if (changed && changed[1].split(" ").indexOf(shown) === -1) {
      event.preventDefault();
    }
  });

  function catchUp(container) {
    // Resuming re-reads the page anyway.
    if (!container.polarisLivePaused) { refreshLiveParts(container); }
  }

  // The server ends a stream now and then (its lifetime) so that the reconnect
  // checks again who may read: it says "stream-renew" first. EventSource reports
  // every end as an error before it reconnects, and htmx's SSE extension would
  // log each to the console. Its sources are made here, so that the error of a
  // planned end reaches neither the extension nor the banner: EventSource resumes
  // after the last event's id, or the page's own lastEventId when none came, and
  // the server replays what came in between. With neither id the reconnect
  // starts from now, so it counts as a break. A stream ended by signing out (in
  // another tab) says "signed-out": retrying could only be sent to sign in, so
  // the page reloads, which takes it there. So does one that finds acting as a
  // customer lapsed: the reload ends it, audited, and leaves the customer.
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  if (window.htmx && window.EventSource) {
    htmx.createEventSource = function (url) {
      var source = new EventSource(url, { withCredentials: true });
      var onerror = null;
      var renewing = false;
      Object.defineProperty(source, "onerror", {
        get: function () { return onerror; },
        set: function (handler) { onerror = handler; }
      });
      source.addEventListener("stream-renew", function (event) {
        renewing = Boolean(event.lastEventId) || /[?&]lastEventId=/.test(url);
      });
      source.addEventListener("signed-out", function () {
        source.close();
        // Unless this page is the one signing out, already on its way there.
        if (!leaving) { window.location.reload(); }
      });
      source.addEventListener("error", function (event) {
        if (renewing && source.readyState === EventSource.CONNECTING) {
          renewing = false;
          return;
        }
        renewing = false;
        if (onerror) { onerror.call(source, event); }
      });
      return source;
    };
  }

  // EventSource reconnects by itself after an error; until the page has caught
  // up, its banner says it may be out of date.
  document.addEventListener("htmx:sseError", function (event) {
    var container = event.target;
    container.polarisLiveBroken = true;
    showLiveState(container);
  });
  // A message about something under way ("Stop requested") names the
  // event that shows how it went (data-until): once that comes, the live part
  // says it, and the sentence would only grow out of date above it. A part that
  // the event's HTML replaces (sse-swap, outerHTML) is out of the page by the
  // time htmx says it swapped, so its own word is taken before the swap; a part
  // that re-reads itself (hx-trigger="sse:…") says so after.
  function dropMessagesAnsweredBy(event) {
    var type = event.detail && event.detail.type;
    if (!type) { return; }
    document.querySelectorAll(".messages [data-until]").forEach(function (message) {
      if (message.getAttribute("data-until") === type) { message.remove(); }
    });
  }
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!event.defaultPrevented) { dropMessagesAnsweredBy(event); }
  });
  document.addEventListener("htmx:sseMessage", dropMessagesAnsweredBy);
  document.addEventListener("htmx:sseMessage", function (event) {
    var container = liveContainer(event.target);
    if (container && container.polarisLiveStale && !container.polarisLiveBroken) {
      catchUp(container);
    }
  });
  document.addEventListener("htmx:sseOpen", function (event) {
    var container = event.target;
    var source = event.detail.source;
    if (!source || source.polarisWatched) { return; }
    source.polarisWatched = true;
    source.addEventListener("stream-open", function () {
      if (container.polarisLiveBroken) {
        container.polarisLiveBroken = false;
        catchUp(container);
      }
    });
    source.addEventListener("stream-reset", function () {
      catchUp(container);
    });
  });
})();

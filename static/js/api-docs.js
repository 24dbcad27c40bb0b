// Starts django-ninja's Swagger UI on the API docs page, as ninja's own
// swagger-ui-init.js does, and mends what screen readers stumble on in Swagger's
// markup: with a plugin where Swagger lets one in, else once it renders.
(function () {
  "use strict";

  var page = document.body.dataset;
  var config = JSON.parse(document.getElementById("swagger-settings").textContent);

  function accessibleMarkup(system) {
    var React = system.React;
    return {
      wrapComponents: {
        // An operation's summary is a button that opens it, and Swagger puts the
        // path inside as a link to the operation: a control within a control,
        // which a screen reader reaches as one or the other. The path stays plain
        // text; opening the operation still puts its link in the address bar
        // (deepLinking), and the group headings keep theirs.
        OperationSummaryPath: function (Original) {
          return function (props) {
            var operationProps = props.operationProps.set("isDeepLinkingEnabled", false);
            return React.createElement(
              Original,
              Object.assign({}, props, { operationProps: operationProps })
            );
          };
        },
        // The API's title is the page's h1, and the Authorize dialog and each
        // group of operations begin at h3: the h2 they belong under, for people
        // who move by headings.
        InfoContainer: function (Original) {
          return function (props) {
            return React.createElement(
              React.Fragment,
              null,
              React.createElement(Original, props),
              React.createElement("h2", { className: "visually-hidden" }, "Operations")
            );
          };
        },
        // The icon is all the Authorize dialog's close button shows: its name.
        CloseIcon: function (Original) {
          return function (props) {
            return React.createElement(
              React.Fragment,
              null,
              React.createElement(Original, props),
              React.createElement("span", { className: "visually-hidden" }, "Close")
            );
          };
        },
        // The request body's editor has no label of its own.
        TextArea: function (Original) {
          return function (props) {
            var named = props["aria-label"] || !/\bbody-param__text\b/.test(props.className || "");
            return React.createElement(
              Original,
              named ? props : Object.assign({}, props, { "aria-label": "Request body" })
            );
          };
        },
      },
    };
  }

  config.dom_id = "#swagger-ui";
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  config.plugins = [accessibleMarkup];
  if (page.apiCsrf && page.csrfToken) {
    config.requestInterceptor = function (request) {
      request.headers["X-CSRFToken"] = page.csrfToken;
      return request;
    };
  }
  SwaggerUIBundle(config);

  // Names Swagger gives no one, set once its markup renders (React leaves
  // attributes it did not set alone).
  function nameUnnamed() {
    // Each open operation's table of responses is a region: two open operations
    // would make two landmarks no one can tell apart.
    document.querySelectorAll('.responses-table[role="region"]:not([aria-label])').forEach(function (table) {
      var operation = table.closest(".opblock");
      var method = operation && operation.querySelector(".opblock-summary-method");
      var path = operation && operation.querySelector(".opblock-summary-path");
      if (method && path) {
        table.setAttribute("aria-label", "Responses of " + method.textContent + " " + path.getAttribute("data-path"));
      }
    });
    // The copy buttons of a curl command and of a response show only an icon.
    document.querySelectorAll(".copy-to-clipboard > button:not([aria-label])").forEach(function (button) {
      button.setAttribute("aria-label", "Copy to clipboard");
    });
  }
  new MutationObserver(nameUnnamed).observe(document.getElementById("swagger-ui"), {
    childList: true,
    subtree: true,
  });

  // Swagger's Authorize dialog closes only by its button: Escape closes it too,
  // as a dialog's should, and the keyboard is back on the Authorize button that
  // opened it rather than at the top of the page.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var close = document.querySelector(".dialog-ux .modal-ux-header .close-modal");
    if (!close) { return; }
    close.click();
    var opener = document.querySelector(".auth-wrapper .authorize");
    if (opener) { opener.focus(); }
  });
})();

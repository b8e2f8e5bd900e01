/*
 * Control Site QMS — progressive enhancement for the browser shell. Everything works without it.
 *
 * The shared signature dialog (templates/includes/signature_dialog.html) is a
 * <details data-signature-dialog> holding the signing fields. Here it becomes a button that opens
 * a native modal <dialog>: focus goes to the first field, Escape or "Cancel" closes it, and the
 * fields stay inside the page's <form>, so signing still submits that form normally.
 */
(function () {
  "use strict";

  var FIELDS = "input:not([type=hidden]):not([disabled]), textarea:not([disabled]), select:not([disabled])";

  function firstField(root) {
    var invalid = root.querySelector("[aria-invalid=true]");
    return invalid || root.querySelector(FIELDS);
  }

  function enhance(details) {
    if (details.dataset.enhanced || typeof HTMLDialogElement !== "function") {
      return;
    }
    var summary = details.querySelector(":scope > summary");
    var body = details.querySelector(":scope > .signature-body");
    if (!summary || !body) {
      return;
    }
    details.dataset.enhanced = "true";

    var opener = document.createElement("button");
    opener.type = "button";
    opener.className = summary.className;
    opener.textContent = summary.textContent;
    opener.setAttribute("aria-haspopup", "dialog");

    var dialog = document.createElement("dialog");
    dialog.className = "signature-modal";
    var title = body.querySelector("h1, h2, h3, h4");
    if (title && title.id) {
      dialog.setAttribute("aria-labelledby", title.id);
    }
    // The group role belonged to the inline form; inside a dialog it only adds noise.
    body.removeAttribute("role");
    body.removeAttribute("aria-labelledby");

    var close = document.createElement("button");
    close.type = "button";
    close.className = "dialog-close";
    close.setAttribute("aria-label", "Cancel signing");
    close.innerHTML = "&times;";
    body.insertBefore(close, body.firstChild);

    var submit = body.querySelector("button[type=submit], input[type=submit]");
    if (submit) {
      var actions = document.createElement("div");
      actions.className = "actions";
      var cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "button-link";
      cancel.textContent = "Cancel";
      submit.parentNode.insertBefore(actions, submit);
      actions.appendChild(submit);
      actions.appendChild(cancel);
      cancel.addEventListener("click", function () { dialog.close(); });
    }

    dialog.appendChild(body);
    // Keep the dialog where the <details> was: inside the page's form, so its fields submit.
    details.replaceWith(opener, dialog);

    opener.addEventListener("click", function () {
      dialog.showModal();
      var field = firstField(dialog);
      if (field) {
        field.focus();
      }
    });
    close.addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { opener.focus(); });
    // A click on the backdrop (outside the dialog box) is not a way to dismiss a signature:
    // only Escape, the close button and Cancel close it, so no one loses typed fields by accident.

    // The server re-rendered the page with errors in these fields: open straight away.
    if (dialog.querySelector(".field-error, [aria-invalid=true]") || details.open) {
      opener.click();
    }
  }

  function enhanceAll(root) {
    root = root || document;
    if (root.matches && root.matches("details[data-signature-dialog]")) {
      enhance(root);
      return;
    }
    var all = root.querySelectorAll("details[data-signature-dialog]");
    for (var i = 0; i < all.length; i++) {
      enhance(all[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { enhanceAll(document); });
  } else {
    enhanceAll(document);
  }
  // Fragments swapped in by htmx may carry a signature dialog too.
  document.addEventListener("htmx:load", function (event) { enhanceAll(event.target); });
})();

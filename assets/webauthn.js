// Passkeys on the hosted pages. A button marked data-webauthn="get" (sign in) or "create"
// (register) is shown, and its click asks the service for the ceremony's options (a POST of its
// form's fields, CSRF token included, to data-start), hands them to the browser
// (navigator.credentials.get/create), and submits the form to data-action with the ceremony id
// and the credential as JSON; the service answers that POST as it answers any form (a redirect,
// or a page). Binary fields travel as base64url.
(function () {
  "use strict";

  function toBuffer(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: toBuffer(c.id) });
    });
  }

  function creationOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBuffer(pk.user.id) });
    pk.excludeCredentials = withIds(pk.excludeCredentials);
    return { publicKey: pk };
  }

  function requestOptions(options) {
    var pk = Object.assign({}, options.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    pk.allowCredentials = withIds(pk.allowCredentials);
    return { publicKey: pk };
  }

  function registration(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toText(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toText(r.attestationObject),
        clientDataJSON: toText(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      },
      extensions: {}
    };
  }

  function assertion(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toText(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toText(r.authenticatorData),
        clientDataJSON: toText(r.clientDataJSON),
        signature: toText(r.signature),
        userHandle: toText(r.userHandle)
      },
      extensions: {}
    };
  }

  function fail(form, message) {
    var out = form.querySelector("[data-webauthn-error]");
    if (out) {
      out.textContent = message;
      out.hidden = false;
    }
  }

  function run(button) {
    var form = button.form;
    var mode = button.getAttribute("data-webauthn");
    var fields = new URLSearchParams();
    ["csrf_token", "mfa_token"].forEach(function (name) {
      var field = form.elements[name];
      if (field && field.value) fields.set(name, field.value);
    });
    button.disabled = true;
    fetch(button.getAttribute("data-start"), {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: fields
    })
      .then(function (resp) {
        return resp.json().then(function (body) {
          if (!resp.ok) throw new Error(body.detail || "The service refused to start.");
          return body;
        });
      })
      .then(function (body) {
        form.elements.ceremony.value = body.ceremony;
        if (mode === "create") {
          return navigator.credentials.create(creationOptions(body.options)).then(registration);
        }
        return navigator.credentials.get(requestOptions(body.options)).then(assertion);
      })
      .then(function (credential) {
        form.elements.credential.value = JSON.stringify(credential);
        form.action = button.getAttribute("data-action");
        form.submit();
      })
      .catch(function (e) {
        button.disabled = false;
        var cancelled = e && (e.name === "NotAllowedError" || e.name === "AbortError");
        fail(form, cancelled ? "The passkey request was cancelled or timed out." : "That did not work: " + e.message);
      });
  }

  function init() {
    if (!window.PublicKeyCredential || !window.fetch) return;
    var buttons = document.querySelectorAll("button[data-webauthn]");
    Array.prototype.forEach.call(buttons, function (button) {
      if (!button.form) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        run(button);
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

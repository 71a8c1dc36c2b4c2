/* actionhost site tracker. Include it with a publishable key:
 *   <script async src="https://ACTIONHOST/t.js" data-key="pk_…"></script>
 * It sends a pageview on load and on every single-page navigation, with an
 * anonymous id kept in this site's localStorage. Call
 * actionhost.identify("ada@example.com") when the visitor tells who they are,
 * and actionhost.track("signed_up", {plan: "pro"}) for your own events.
 * Calls made before the script loaded are queued in window.actionhost.q:
 *   window.actionhost = window.actionhost || {q: [], identify: function () {
 *     this.q.push(["identify"].concat([].slice.call(arguments))); }};
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.dataset.key) {
    if (window.console) console.warn("actionhost: t.js needs a data-key attribute with a publishable key (pk_…)");
    return;
  }
  var key = script.dataset.key;
  var endpoint = new URL("/v1/track", script.src).href;
  var storageKey = "actionhost_anonymous_id";

  function newId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    var hex = "";
    for (var i = 0; i < bytes.length; i++) hex += (bytes[i] + 256).toString(16).slice(1);
    return hex;
  }

  function anonymousId() {
    var id = null;
    try { id = window.localStorage.getItem(storageKey); } catch (e) { /* storage blocked */ }
    if (!id || !/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
      id = newId();
      try { window.localStorage.setItem(storageKey, id); } catch (e) { /* keep it for this page */ }
    }
    return id;
  }

  var visitor = anonymousId();

  // text/plain needs no CORS preflight; sendBeacon survives the page unloading.
  function send(body) {
    body.key = key;
    body.anonymous_id = visitor;
    var text = JSON.stringify(body);
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, new Blob([text], { type: "text/plain" }))) return;
    if (window.fetch) {
      window.fetch(endpoint, { method: "POST", body: text, keepalive: true, mode: "cors",
        headers: { "Content-Type": "text/plain" } }).catch(function () {});
    }
  }

  function track(name, properties) {
    send({ events: [{ event: String(name), url: location.href,
      occurred_at: new Date().toISOString(), properties: properties || {} }] });
  }

  var lastUrl = null;
  function pageview() {
    if (location.href === lastUrl) return;
    lastUrl = location.href;
    var properties = { title: document.title };
    if (document.referrer) properties.referrer = document.referrer;
    track("pageview", properties);
  }

  function identify(email) {
    if (typeof email !== "string" || email.indexOf("@") < 1) return;
    send({ identify: { email: email } });
  }

  // Single-page apps: pushState and replaceState change the url without a load.
  ["pushState", "replaceState"].forEach(function (method) {
    var original = history[method];
    history[method] = function () {
      var result = original.apply(this, arguments);
      setTimeout(pageview, 0);
      return result;
    };
  });
  window.addEventListener("popstate", pageview);

  var queued = (window.actionhost && window.actionhost.q) || [];
  window.actionhost = { identify: identify, track: track, anonymousId: function () { return visitor; } };
  pageview();
  queued.forEach(function (call) {
    var fn = window.actionhost[call[0]];
    if (typeof fn === "function") fn.apply(null, call.slice(1));
  });
})();

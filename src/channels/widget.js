/*
 * kefu's web chat widget. Add to a page:
 *   <script src="https://KEFU_HOST/widget.js" data-key="CHAT_KEY" async></script>
 * Optional: data-title, data-lang (zh or en; else the page's <html lang>), data-open.
 * Talks to POST /channels/web/turn with a `chat` key; the page's origin must be in kefu's
 * server.cors_origins. A random visitor id and the transcript stay in localStorage, so a
 * reload continues the conversation.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__kefuWidget) return;
  window.__kefuWidget = true;
  var base = new URL(script.src, location.href).origin;
  var key = script.getAttribute("data-key") || "";
  var pageLang = (script.getAttribute("data-lang") || document.documentElement.lang ||
    navigator.language || "zh").toLowerCase();
  var lang = pageLang.indexOf("zh") === 0 ? "zh" : "en";
  var T = {
    zh: {
      title: "在线客服", placeholder: "请输入您的问题…", send: "发送", person: "转人工",
      personText: "转人工", hello: "您好！请问有什么可以帮您？", open: "在线咨询", close: "关闭",
      handoff: "已为您转接人工客服，请稍候。", yes: "确认", no: "取消", rate: "评分",
      thanks: "感谢您的评分！", error: "暂时无法连接客服，请稍后再试。", typing: "正在输入…"
    },
    en: {
      title: "Customer service", placeholder: "Type your question…", send: "Send",
      person: "Talk to a person", personText: "talk to a person",
      hello: "Hello! How can I help you today?", open: "Chat with us", close: "Close",
      handoff: "You are being connected to a person; please wait.", yes: "Yes", no: "No",
      rate: "Rate", thanks: "Thank you for your rating!",
      error: "We cannot reach customer service right now; please try again shortly.",
      typing: "Typing…"
    }
  }[lang];
  var title = script.getAttribute("data-title") || T.title;

  var store = {
    get: function (k, d) {
      try { var v = localStorage.getItem("kefu." + k); return v === null ? d : JSON.parse(v); }
      catch (e) { return d; }
    },
    set: function (k, v) { try { localStorage.setItem("kefu." + k, JSON.stringify(v)); } catch (e) {} }
  };
  var visitor = store.get("visitor", null);
  if (!/^[0-9a-f]{32}$/.test(visitor || "")) {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    visitor = Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
    store.set("visitor", visitor);
  }
  // Each entry: {who: "bot"|"me"|"note", text, options?, confirm?, survey?, turnId?}
  var transcript = store.get("transcript", []);
  var withPerson = store.get("with_person", false);

  var host = document.createElement("div");
  host.id = "kefu-widget";
  document.body.appendChild(host);
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" +
    ":host{all:initial}" +
    ".btn{font:14px system-ui,sans-serif;cursor:pointer;border:0;border-radius:18px;padding:8px 14px}" +
    ".launcher{position:fixed;right:20px;bottom:20px;background:#1677ff;color:#fff;box-shadow:0 4px 12px rgba(0,0,0,.2);z-index:2147483000}" +
    ".panel{position:fixed;right:20px;bottom:72px;width:340px;max-width:calc(100vw - 40px);height:480px;max-height:calc(100vh - 100px);display:none;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 28px rgba(0,0,0,.25);font:14px/1.45 system-ui,sans-serif;color:#222;z-index:2147483000;overflow:hidden}" +
    ".panel.open{display:flex}" +
    ".head{display:flex;align-items:center;gap:8px;padding:10px 12px;background:#1677ff;color:#fff}" +
    ".head .t{flex:1;font-weight:600}" +
    ".head .btn{background:rgba(255,255,255,.2);color:#fff;padding:4px 10px;font-size:12px}" +
    ".status{display:none;padding:6px 12px;background:#fff7e6;color:#ad6800;font-size:12px}" +
    ".status.on{display:block}" +
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f6f8}" +
    ".msg{max-width:85%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}" +
    ".bot{align-self:flex-start;background:#fff;border:1px solid #e5e6eb}" +
    ".me{align-self:flex-end;background:#1677ff;color:#fff}" +
    ".note{align-self:center;color:#888;font-size:12px}" +
    ".choices{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:90%}" +
    ".choices .btn{background:#fff;color:#1677ff;border:1px solid #1677ff;padding:5px 10px;font-size:13px;text-align:left}" +
    ".choices .btn:disabled{opacity:.5;cursor:default}" +
    "form{display:flex;gap:6px;padding:8px;border-top:1px solid #e5e6eb}" +
    "input{flex:1;font:14px system-ui,sans-serif;padding:8px 10px;border:1px solid #d9d9d9;border-radius:18px;outline:none}" +
    "form .btn{background:#1677ff;color:#fff}" +
    "</style>" +
    "<button class='btn launcher' part='launcher' data-kefu='launcher'></button>" +
    "<div class='panel' role='dialog' data-kefu='panel'>" +
    "<div class='head'><span class='t'></span>" +
    "<button class='btn' type='button' data-kefu='person'></button>" +
    "<button class='btn' type='button' data-kefu='close'>×</button></div>" +
    "<div class='status' data-kefu='status'></div>" +
    "<div class='log' data-kefu='log' aria-live='polite'></div>" +
    "<form data-kefu='form'><input data-kefu='input' maxlength='2000' autocomplete='off'>" +
    "<button class='btn' type='submit' data-kefu='send'></button></form></div>";
  var $ = function (k) { return root.querySelector("[data-kefu='" + k + "']"); };
  var panel = $("panel"), log = $("log"), input = $("input"), status = $("status");
  $("launcher").textContent = T.open;
  root.querySelector(".t").textContent = title;
  $("person").textContent = T.person;
  $("send").textContent = T.send;
  $("close").setAttribute("aria-label", T.close);
  input.placeholder = T.placeholder;

  function setOpen(open) {
    panel.classList.toggle("open", open);
    store.set("open", open);
    if (open) { input.focus(); log.scrollTop = log.scrollHeight; }
  }
  function setWithPerson(on) {
    withPerson = on;
    store.set("with_person", on);
    status.textContent = T.handoff;
    status.classList.toggle("on", on);
  }
  function save() { store.set("transcript", transcript.slice(-60)); }

  function bubble(who, text) {
    var d = document.createElement("div");
    d.className = "msg " + who;
    d.setAttribute("data-kefu", "msg-" + who);
    d.textContent = text;
    log.appendChild(d);
    return d;
  }
  function choices(kind, items, done) {
    var box = document.createElement("div");
    box.className = "choices";
    box.setAttribute("data-kefu", kind);
    items.forEach(function (it) {
      var b = document.createElement("button");
      b.className = "btn";
      b.type = "button";
      b.textContent = it.label;
      if (done) b.disabled = true;
      b.addEventListener("click", function () {
        Array.prototype.forEach.call(box.querySelectorAll("button"), function (x) { x.disabled = true; });
        it.pick();
      });
      box.appendChild(b);
    });
    log.appendChild(box);
  }
  function render(e, live) {
    if (e.who !== "bot") { bubble(e.who, e.text); return; }
    bubble("bot", e.text);
    var done = !live || e.done;
    if (e.options && e.options.length) {
      choices("options", e.options.map(function (q, i) {
        return { label: q, pick: function () { e.done = true; save(); send(String(i + 1), q); } };
      }), done);
    }
    if (e.confirm) {
      choices("confirm", [T.yes, T.no].map(function (w) {
        return { label: w, pick: function () { e.done = true; save(); send(w); } };
      }), done);
    }
    if (e.survey) {
      var items = [];
      for (var n = e.survey.min; n <= e.survey.max; n++) {
        (function (n) {
          items.push({ label: "★ " + n, pick: function () { e.done = true; save(); rate(e.turnId, n); } });
        })(n);
      }
      choices("survey", items, done);
    }
  }
  function add(e) {
    transcript.push(e);
    save();
    render(e, true);
    log.scrollTop = log.scrollHeight;
  }

  function call(path, body) {
    return fetch(base + path, {
      method: "POST",
      headers: { "content-type": "application/json", "authorization": "Bearer " + key },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error((j.error && j.error.message) || ("HTTP " + r.status));
        return j;
      });
    });
  }

  var busy = false;
  function send(text, shown) {
    text = (text || "").trim();
    if (!text || busy) return;
    busy = true;
    add({ who: "me", text: shown || text });
    var typing = bubble("note", T.typing);
    call("/channels/web/turn", { visitor: visitor, text: text }).then(function (j) {
      typing.remove();
      var t = j.turn || {};
      var e = { who: "bot", text: j.reply || "", turnId: t.turn_id };
      if (t.action === "clarify" && t.options && t.options.length) {
        e.text = (j.reply || "").split("\n")[0];
        e.options = t.options.map(function (o) { return o.question; });
      }
      if (t.action === "confirm") e.confirm = true;
      if (t.survey) {
        e.survey = { min: t.survey.min, max: t.survey.max };
        e.text += "\n\n" + t.survey.prompt;
      }
      add(e);
      if (t.action === "handoff" || t.action === "with_agent") setWithPerson(true);
      else if (t.action) setWithPerson(false);
    }).catch(function (err) {
      typing.remove();
      add({ who: "note", text: T.error + " (" + err.message + ")" });
    }).then(function () { busy = false; });
  }
  function rate(turnId, n) {
    if (!turnId) return;
    call("/v1/feedback", { turn_id: turnId, rating: n }).then(function () {
      add({ who: "note", text: T.thanks });
    }).catch(function (err) {
      add({ who: "note", text: T.error + " (" + err.message + ")" });
    });
  }

  $("launcher").addEventListener("click", function () { setOpen(!panel.classList.contains("open")); });
  $("close").addEventListener("click", function () { setOpen(false); });
  $("person").addEventListener("click", function () { send(T.personText); });
  $("form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var v = input.value;
    input.value = "";
    send(v);
  });

  if (!transcript.length) {
    transcript.push({ who: "bot", text: T.hello });
    save();
  }
  transcript.forEach(function (e, i) { render(e, i === transcript.length - 1); });
  setWithPerson(withPerson);
  if (!withPerson) status.classList.remove("on");
  setOpen(store.get("open", script.hasAttribute("data-open")));
})();

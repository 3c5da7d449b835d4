// The inbox, live: the conversation list refreshes as messages arrive (unread counts,
// newest first), the open thread grows and its ticks change in place, a reply posts
// through the outbound pipeline without leaving the page, take over / hand back flip in
// place (on every screen: `conversation.updated`), and the failed-messages page
// refreshes as messages fail or are retried. Events come from static/js/live.js as
// `dashboard:event`; after a (re)connect everything shown is fetched again.
(function () {
  "use strict";
  const configNode = document.getElementById("inbox-config");
  const config = configNode ? JSON.parse(configNode.textContent) : null;
  const openId = config ? Number(config.conversation) : null;
  const TICKS = { received: "•", queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗" };

  function csrf() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  async function fetchDoc(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
    if (!response.ok) return null;
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }

  async function post(url, body) {
    try {
      const response = await fetch(url, {
        method: "POST", body, credentials: "same-origin",
        headers: { "X-Requested-With": "fetch", "X-CSRFToken": csrf() },
      });
      return await response.json();
    } catch (error) {
      return { ok: false, message: "" };
    }
  }

  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((node) => {
      const when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when)) node.textContent = when.toLocaleTimeString(document.documentElement.lang || undefined, { hour: "2-digit", minute: "2-digit" });
    });
  }

  // --- the conversation list -----------------------------------------------------------

  const refreshList = debounce(async () => {
    const holder = document.getElementById("inbox-list-fragment");
    if (!holder) return;
    const url = new URL(holder.dataset.url, location.href); // keeps the search (?q=)
    url.searchParams.set("partial", "list");
    const page = await fetchDoc(url.toString());
    const fresh = page && page.getElementById("inbox-list-fragment");
    if (!fresh) return;
    if (openId) {
      const open = fresh.querySelector(`[data-conversation="${openId}"]`);
      if (open) {
        open.classList.add("is-open");
        const count = open.querySelector(".unread-count");
        if (count && document.visibilityState === "visible") { count.remove(); open.classList.remove("has-unread"); }
      }
    }
    holder.replaceWith(fresh);
  }, 250);

  // --- the open thread -------------------------------------------------------------------

  const thread = document.getElementById("thread");

  function tick(message) {
    const node = document.createElement("span");
    node.className = `tick tick-${message.status}`;
    node.dataset.tick = message.status;
    node.textContent = TICKS[message.status] || "⊘";
    node.title = (config.t[message.status] || message.status) + (message.error ? `: ${message.error}` : "");
    return node;
  }

  function bubble(message) {
    const li = document.createElement("li");
    li.className = `bubble dir-${message.direction}`;
    li.dataset.id = message.id;
    const body = document.createElement("div");
    body.className = "bubble-body";
    const text = document.createElement("bdi");
    text.className = "bubble-text";
    text.textContent = message.text || (message.kind !== "text" ? `[${message.kind}]` : "");
    body.append(text);
    const meta = document.createElement("div");
    meta.className = "bubble-meta muted";
    const time = document.createElement("time");
    time.setAttribute("datetime", message.created_at || new Date().toISOString());
    meta.append(time);
    if (message.direction === "out") meta.append(" ", tick(message));
    li.append(body, meta);
    localTimes(li);
    return li;
  }

  const markRead = debounce(() => {
    if (document.visibilityState === "visible") post(config.readUrl, new FormData());
  }, 500);

  function added(message) {
    refreshList();
    if (!thread || Number(message.conversation) !== openId) return;
    if (thread.querySelector(`[data-id="${CSS.escape(message.id)}"]`)) return;
    const empty = thread.querySelector(".thread-empty");
    if (empty) empty.remove();
    thread.append(bubble(message));
    thread.scrollTop = thread.scrollHeight;
    if (message.direction === "in") markRead();
  }

  function statusChanged(message) {
    if (thread) {
      const existing = thread.querySelector(`[data-id="${CSS.escape(message.id)}"] .tick`);
      if (existing) existing.replaceWith(tick(message));
    }
    if (message.status === "failed" || message.status === "queued") {
      refreshList(); // the count of failed messages
      refreshDeadLetters();
    }
  }

  function takeover(human) {
    const holder = document.getElementById("takeover");
    if (!holder) return;
    holder.dataset.human = human ? "1" : "0";
    holder.querySelectorAll(".takeover-form").forEach((form) => {
      form.hidden = form.dataset.when !== (human ? "1" : "0");
    });
  }

  const refreshThread = debounce(async () => {
    if (!thread) return;
    const page = await fetchDoc(`${location.pathname}?partial=thread`);
    const fresh = page && page.getElementById("thread");
    if (!fresh) return;
    thread.replaceChildren(...fresh.children);
    localTimes(thread);
    thread.scrollTop = thread.scrollHeight;
    const holder = page.getElementById("takeover");
    if (holder) takeover(holder.dataset.human === "1");
  }, 150);

  // --- forms -----------------------------------------------------------------------------

  const reply = document.getElementById("reply-form");
  if (reply) {
    const textArea = reply.querySelector("textarea");
    const problem = reply.querySelector(".reply-error");
    reply.addEventListener("submit", async (submit) => {
      submit.preventDefault();
      if (!textArea.value.trim()) return;
      const button = reply.querySelector("button");
      button.disabled = true;
      const answer = await post(reply.action, new FormData(reply));
      button.disabled = false;
      if (answer.ok) {
        textArea.value = "";
        reply.querySelector("input[name=key]").value = answer.key;
        problem.hidden = true;
      } else {
        problem.textContent = answer.message || "…";
        problem.hidden = false;
      }
    });
    textArea.addEventListener("keydown", (key) => {
      if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) reply.requestSubmit();
    });
  }

  document.addEventListener("submit", async (submit) => {
    const form = submit.target;
    if (form.classList.contains("takeover-form")) {
      submit.preventDefault();
      const answer = await post(form.action, new FormData(form));
      if (answer.ok) takeover(answer.human_takeover);
    } else if (form.classList.contains("retry-form")) {
      submit.preventDefault();
      form.querySelector("button").disabled = true;
      await post(form.action, new FormData(form));
      refreshDeadLetters();
    }
  });

  // --- failed messages page --------------------------------------------------------------

  const refreshDeadLetters = debounce(async () => {
    const rows = document.getElementById("dead-letter-rows");
    if (!rows) return;
    const page = await fetchDoc(`${location.pathname}?partial=1`);
    const fresh = page && page.getElementById("dead-letter-rows");
    if (fresh) rows.replaceWith(fresh);
  }, 250);

  // --- live --------------------------------------------------------------------------------

  function everything() {
    refreshList();
    refreshThread();
    refreshDeadLetters();
  }

  document.addEventListener("dashboard:event", (event) => {
    const data = event.detail || {};
    if (data.type === "message.new" && data.message) added(data.message);
    else if (data.type === "message.status" && data.message) statusChanged(data.message);
    else if (data.type === "conversation.updated" && data.conversation) {
      refreshList();
      if (Number(data.conversation.id) === openId) takeover(data.conversation.human_takeover);
    }
  });
  // Every (re)connect (live.js, once the server said hello): whatever was stored while
  // nobody listened -- since the page was rendered, or while the socket was down.
  document.addEventListener("dashboard:connected", everything);
  if (window.dashboardLive && window.dashboardLive.connected) everything();
  if (thread) { localTimes(thread); thread.scrollTop = thread.scrollHeight; }
  document.body.dataset.inboxReady = "1";
})();

// The live message log: rows arrive from the tenant's websocket (static/js/live.js
// dispatches each event as `dashboard:event` on document), ticks change in place, older
// history loads by keyset pages, and after a (re)connect the first page is fetched again
// so nothing sent while the socket was down is missing.
(function () {
  "use strict";
  const list = document.getElementById("log-list");
  const configNode = document.getElementById("log-config");
  if (!list || !configNode) return;
  const config = JSON.parse(configNode.textContent);
  const t = config.t;
  const firstPage = list.dataset.firstPage === "1";
  const filters = document.getElementById("log-filters");
  const mediaKinds = new Set(config.mediaKinds);
  const TICKS = { received: "•", queued: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "✗" };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((node) => {
      const when = new Date(node.getAttribute("datetime"));
      if (!isNaN(when)) node.textContent = when.toLocaleTimeString(document.documentElement.lang || undefined);
    });
  }

  function tick(message) {
    const status = message.status;
    const node = el("span", `tick tick-${status}`, TICKS[status] || "⊘");
    node.dataset.tick = status;
    let title = t.status[status] || status;
    if (message.error && (status === "failed" || status === "suppressed")) title += `: ${message.error}`;
    node.title = title;
    return node;
  }

  function row(message) {
    const li = el("li", `log-row dir-${message.direction}`);
    li.dataset.id = message.id;
    li.dataset.session = message.session_id;
    li.dataset.direction = message.direction;
    const time = el("time");
    time.setAttribute("datetime", message.created_at || new Date().toISOString());
    li.append(time);
    const dir = el("span", "log-dir", message.direction === "in" ? "⬅" : "➡");
    dir.title = message.direction === "in" ? t.in : t.out;
    li.append(dir);
    const who = el("span", "log-who");
    const contact = message.contact || {};
    const name = el("bdi", "log-name", contact.name || contact.phone);
    if (!contact.name) name.dir = "ltr";
    who.append(name);
    if (contact.name) {
      const phone = el("bdi", "muted log-phone", contact.phone);
      phone.dir = "ltr";
      who.append(" ", phone);
    }
    li.append(who);
    li.append(el("span", "log-session muted", config.sessions[String(message.session_id)] || ""));
    const body = el("span", "log-body");
    if (mediaKinds.has(message.kind)) {
      const url = config.mediaUrl.replace(config.placeholder, message.id);
      if (message.kind === "image" || message.kind === "sticker") {
        const img = el("img", "log-thumb");
        img.loading = "lazy";
        img.alt = t.image;
        img.src = url;
        // Received media is fetched after the message is stored: try again shortly.
        img.addEventListener("error", () => {
          if (!img.dataset.retried) { img.dataset.retried = "1"; setTimeout(() => { img.src = `${url}?r=1`; }, 3000); }
        });
        body.append(img, " ");
      } else {
        const link = el("a", "log-media", `📎 ${message.kind}`);
        link.href = url;
        body.append(link, " ");
      }
    } else if (message.kind === "location") {
      body.append("📍 ");
    } else if (message.kind === "contact") {
      body.append(`👤 ${(message.payload && message.payload.display_name) || ""} `);
    } else if (message.kind === "reaction") {
      body.append(`${(message.payload && message.payload.emoji) || ""} `);
    }
    body.append(el("bdi", "log-text", message.text || ""));
    li.append(body, tick(message));
    localTimes(li);
    return li;
  }

  function matches(message) {
    if (config.session && Number(message.session_id) !== Number(config.session)) return false;
    if (config.direction && message.direction !== config.direction) return false;
    return true;
  }

  function find(id) {
    return list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  }

  function added(message) {
    if (!firstPage || !matches(message)) return;
    const existing = find(message.id);
    if (existing) { existing.replaceWith(row(message)); return; }
    const empty = list.querySelector(".log-empty");
    if (empty) empty.remove();
    const node = row(message);
    node.classList.add("is-new");
    list.prepend(node);
  }

  function statusChanged(message) {
    const existing = find(message.id);
    if (!existing) return;
    existing.querySelector(".tick").replaceWith(tick(message));
  }

  function query(extra) {
    const params = new URLSearchParams();
    if (config.session) params.set("session", config.session);
    if (config.direction) params.set("direction", config.direction);
    for (const [name, value] of Object.entries(extra)) params.set(name, value);
    params.set("partial", "1");
    return `${location.pathname}?${params}`;
  }

  async function fragment(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
    const html = await response.text();
    return new DOMParser().parseFromString(html, "text/html").getElementById("log-fragment");
  }

  function setOlder(cursor) {
    const holder = document.querySelector(".log-more");
    let link = document.getElementById("log-older");
    if (!cursor) { if (link) link.remove(); return; }
    if (!link) {
      link = el("a", "", t.older);
      link.id = "log-older";
      holder.append(link);
    }
    const params = new URLSearchParams(query({ before: cursor }).split("?")[1]);
    params.delete("partial");
    link.href = `?${params}`;
    link.dataset.cursor = cursor;
  }

  // Older history: the next keyset page appended below, without leaving the live page.
  let olderLoaded = false; // once true, a catch-up leaves the "older" link where it is
  document.addEventListener("click", async (click) => {
    const link = click.target.closest("#log-older");
    if (!link || !firstPage) return;
    click.preventDefault();
    const cursor = new URLSearchParams(link.search).get("before");
    const page = await fragment(query({ before: cursor }));
    if (!page) return;
    olderLoaded = true;
    page.querySelectorAll("li.log-row").forEach((li) => { if (!find(li.dataset.id)) list.append(li); });
    localTimes(list);
    setOlder(page.dataset.next);
  });

  // (Re)connected: what arrived while the socket was down is in the first page. It is
  // merged in -- rows already shown are updated, new ones go on top -- so the older
  // pages someone loaded (perhaps while this was on its way) stay where they are.
  let refreshing = null;
  function refresh() {
    if (!firstPage) return;
    clearTimeout(refreshing);
    refreshing = setTimeout(async () => {
      const page = await fragment(query({}));
      if (!page) return;
      let previous = null; // the row before, in the server's order (newest first)
      page.querySelectorAll("li.log-row").forEach((li) => {
        const existing = find(li.dataset.id);
        if (existing) existing.replaceWith(li);
        else if (previous) previous.after(li);
        else list.prepend(li);
        previous = li;
      });
      const empty = list.querySelector(".log-empty");
      if (empty && list.querySelector("li.log-row")) empty.remove();
      localTimes(list);
      if (!olderLoaded) setOlder(page.dataset.next);
    }, 100);
  }

  if (filters) {
    filters.addEventListener("change", () => filters.submit());
  }

  document.addEventListener("dashboard:event", (event) => {
    const data = event.detail || {};
    if (data.type === "message.new" && data.message) added(data.message);
    else if (data.type === "message.status" && data.message) statusChanged(data.message);
  });
  // Every (re)connect (live.js, once the server said hello): whatever was stored while
  // nobody listened -- since the page was rendered, or while the socket was down.
  document.addEventListener("dashboard:connected", refresh);
  localTimes(list);
  // The socket may have said hello before this script listened.
  if (window.dashboardLive && window.dashboardLive.connected) refresh();
  list.dataset.ready = "1";
})();

// The live orders board. Every `order.updated` from the tenant's websocket (dispatched by
// static/js/live.js as `dashboard:event`) fetches that order's server-rendered card and
// today's counts, and puts the card in its status's column: a second screen sees a
// click on the first within a moment. A new order arrives with a visible and an audible
// cue. Buttons post without leaving the page; after a (re)connect the whole board is
// fetched again so nothing missed while the socket was down stays missing.
(function () {
  "use strict";
  const board = document.getElementById("board");
  const configNode = document.getElementById("board-config");
  if (!board || !configNode) return;
  const config = JSON.parse(configNode.textContent);
  const t = config.t;
  const finished = new Set(config.finished);
  const notice = document.getElementById("board-notice");
  const soundButton = document.getElementById("board-sound");
  let audio = null;

  function cardUrl(pk) {
    return config.cardUrl.replace("/0/", `/${pk}/`);
  }

  async function html(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`${response.status}`);
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }

  // --- time on the cards ---------------------------------------------------------------

  function age(since) {
    const minutes = Math.max(0, Math.floor((Date.now() - since.getTime()) / 60000));
    if (minutes < 1) return t.justNow;
    if (minutes < 60) return t.minutes.replace("%(n)s", minutes);
    return t.hours.replace("%(h)s", Math.floor(minutes / 60)).replace("%(m)s", minutes % 60);
  }

  function tickCards(root) {
    const now = Date.now();
    (root || board).querySelectorAll(".order-card").forEach((card) => {
      const since = new Date(card.dataset.since);
      if (!isNaN(since)) card.querySelector(".order-age").textContent = age(since);
      const lateAt = card.dataset.lateAt && new Date(card.dataset.lateAt);
      if (lateAt && !isNaN(lateAt) && now >= lateAt.getTime()) card.classList.add("is-late");
    });
  }

  // --- cues ------------------------------------------------------------------------------

  function soundEnabled() {
    return localStorage.getItem("board-sound") === "on";
  }

  function showSound() {
    const on = soundEnabled();
    soundButton.setAttribute("aria-pressed", on ? "true" : "false");
    soundButton.querySelector("span").textContent = on ? t.soundOn : t.soundOff;
  }

  function beep() {
    if (!soundEnabled()) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      [0, 0.22].forEach((offset, i) => {
        const oscillator = audio.createOscillator();
        const gain = audio.createGain();
        oscillator.frequency.value = i ? 1175 : 880;
        gain.gain.setValueAtTime(0.0001, audio.currentTime + offset);
        gain.gain.exponentialRampToValueAtTime(0.3, audio.currentTime + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + offset + 0.2);
        oscillator.connect(gain).connect(audio.destination);
        oscillator.start(audio.currentTime + offset);
        oscillator.stop(audio.currentTime + offset + 0.22);
      });
      board.dataset.beeps = String(Number(board.dataset.beeps || 0) + 1);
    } catch (error) { /* no audio here: the visible cue remains */ }
  }

  let noticeTimer = null;
  function announce(text) {
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
  }

  function cue(card) {
    card.classList.add("is-new");
    setTimeout(() => card.classList.remove("is-new"), 10000);
    board.dataset.cues = String(Number(board.dataset.cues || 0) + 1);
    announce(t.newOrder.replace("%(number)s", card.dataset.number));
    beep();
  }

  soundButton.addEventListener("click", () => {
    localStorage.setItem("board-sound", soundEnabled() ? "off" : "on");
    showSound();
    if (soundEnabled()) beep(); // a click unlocks audio in browsers that need a gesture
  });

  // --- placing cards -----------------------------------------------------------------

  function counts() {
    board.querySelectorAll(".board-column").forEach((column) => {
      column.querySelector(".column-count").textContent = column.querySelectorAll(".order-card").length;
    });
  }

  function place(card) {
    const column = board.querySelector(`.board-column[data-column="${card.dataset.status}"] .column-cards`);
    if (!column) { card.remove(); return; }
    const since = new Date(card.dataset.since).getTime();
    const newestFirst = finished.has(card.dataset.status);
    const before = [...column.children].find((other) => {
      if (other === card) return false;
      const otherSince = new Date(other.dataset.since).getTime();
      return newestFirst ? otherSince < since : otherSince > since;
    });
    column.insertBefore(card, before || null);
  }

  const latest = new Map(); // pk -> the newest `updated` placed, so late answers lose
  async function refreshCard(pk) {
    const page = await html(cardUrl(pk));
    const existing = document.getElementById(`order-${pk}`);
    if (!page) { if (existing) existing.remove(); counts(); return; }
    const card = page.querySelector(".order-card");
    const updated = new Date(card.dataset.updated).getTime();
    if (latest.has(pk) && latest.get(pk) > updated) return;
    latest.set(pk, updated);
    const summary = page.getElementById("board-summary");
    if (summary) document.getElementById("board-summary").replaceWith(summary);
    const open = existing && existing.querySelector("details[open] input[name=note]");
    if (existing && existing.dataset.status === card.dataset.status && open && open.value) {
      return; // someone is typing a reason on this card: leave it be
    }
    if (existing) existing.replaceWith(card);
    place(card);
    tickCards(card.parentElement);
    counts();
    if (!existing && card.dataset.status === "CONFIRMED") cue(card);
  }

  let refreshing = null;
  function refreshBoard() {
    clearTimeout(refreshing);
    refreshing = setTimeout(async () => {
      const page = await html(`${location.pathname}?partial=board`);
      if (!page) return;
      const known = new Set([...board.querySelectorAll(".order-card")].map((card) => card.id));
      const fresh = page.getElementById("board-fragment");
      document.getElementById("board-fragment").replaceWith(fresh);
      tickCards();
      fresh.querySelectorAll('.order-card[data-status="CONFIRMED"]').forEach((card) => {
        if (!known.has(card.id)) cue(card);
      });
    }, 100);
  }

  // --- buttons -----------------------------------------------------------------------

  board.addEventListener("submit", async (submit) => {
    const form = submit.target.closest("form.order-move");
    if (!form) return;
    submit.preventDefault();
    const card = form.closest(".order-card");
    card.classList.add("is-busy");
    card.querySelectorAll(".order-error").forEach((node) => node.remove());
    let answer;
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      answer = await response.json();
    } catch (error) {
      answer = { ok: false, message: t.failed };
    }
    card.classList.remove("is-busy");
    if (!answer.ok) {
      const problem = document.createElement("p");
      problem.className = "order-error";
      problem.setAttribute("role", "alert");
      problem.textContent = answer.message;
      card.append(problem);
    }
    // Either way, show where the order is now (the event will say so too).
    refreshCard(card.dataset.pk);
  });

  // --- live --------------------------------------------------------------------------

  document.addEventListener("dashboard:event", (event) => {
    const data = event.detail || {};
    if (data.type === "order.updated" && data.order) refreshCard(String(data.order.pk));
  });
  // Every (re)connect (live.js, once the server said hello): whatever was stored while
  // nobody listened -- since the page was rendered, or while the socket was down.
  document.addEventListener("dashboard:connected", refreshBoard);
  if (window.dashboardLive && window.dashboardLive.connected) refreshBoard();

  showSound();
  tickCards();
  setInterval(tickCards, 15000);
  board.dataset.ready = "1";
})();

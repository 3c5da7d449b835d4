// Sessions page: cards follow `session.status` and `session.qr` live, the QR code
// replaces itself with a countdown to its expiry, and the buttons act without a reload.
(function () {
  const t = window.DASHBOARD_I18N || {};
  const labelsNode = document.getElementById("status-labels");
  const labels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  const cards = document.getElementById("session-cards");
  const cardUrl = (id) => window.SESSION_CARD_URL.replace("00000000-0000-0000-0000-000000000000", id);
  const latest = {}; // session id -> number of the newest card request

  function cardOf(id) {
    return document.querySelector(`.session-card[data-session="${id}"]`);
  }

  async function refreshCard(id) {
    const ticket = (latest[id] || 0) + 1;
    latest[id] = ticket;
    const response = await fetch(cardUrl(id), { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (latest[id] !== ticket) return; // a newer refresh is on its way
    const card = cardOf(id);
    if (response.status === 404) { if (card) card.remove(); return; }
    if (!response.ok) return;
    const html = await response.text();
    if (card) {
      card.outerHTML = html;
    } else {
      const empty = document.getElementById("no-sessions");
      if (empty) empty.remove();
      cards.insertAdjacentHTML("beforeend", html);
    }
    tick();
  }

  function showQr(event) {
    const card = cardOf(event.session);
    if (!card) { refreshCard(event.session); return; }
    const box = card.querySelector('[data-role="qr"]');
    card.querySelector('[data-role="qr-image"]').innerHTML = event.svg;
    card.querySelector('[data-role="countdown"]').dataset.expiresAt = event.expires_at;
    box.hidden = false;
    card.dataset.status = "WAIT_QR";
    const status = card.querySelector('[data-role="status"]');
    status.dataset.status = "WAIT_QR";
    status.textContent = labels.WAIT_QR || "WAIT_QR";
    tick();
  }

  function tick() {
    document.querySelectorAll('[data-role="countdown"]').forEach((node) => {
      const expires = Date.parse(node.dataset.expiresAt || "");
      if (!expires) { node.textContent = ""; return; }
      const seconds = Math.round((expires - Date.now()) / 1000);
      node.textContent = seconds > 0 ? `${t.expiresIn || "expires in"} ${seconds}s` : (t.expired || "expired");
      node.dataset.seconds = String(Math.max(seconds, 0));
    });
  }
  setInterval(tick, 1000);
  tick();

  document.addEventListener("dashboard:event", (e) => {
    const event = e.detail;
    if (event.type === "session.qr" && event.svg) showQr(event);
    else if (event.type === "session.status" && event.session) refreshCard(event.session);
  });
  // On every (re)connection: what happened before the socket joined was heard by nobody.
  document.addEventListener("dashboard:connected", () => {
    document.querySelectorAll(".session-card").forEach((card) => refreshCard(card.dataset.session));
  });

  // Buttons on a card: post in the background and put the card the server returns in place.
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (!form.hasAttribute("data-card-action")) return;
    e.preventDefault();
    const card = form.closest(".session-card");
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      });
      const html = await response.text();
      if (card && html.trim().startsWith("<article")) card.outerHTML = html;
      else window.location.reload();
      tick();
      // The runner stores a pairing code without a status change: look for it a while.
      if (response.ok && form.hasAttribute("data-await-pairing") && card) {
        const id = card.dataset.session;
        for (let i = 0; i < 30; i += 1) {
          await new Promise((resolve) => setTimeout(resolve, 2000));
          const current = cardOf(id);
          if (!current || current.querySelector(".pairing-code")) break;
          await refreshCard(id);
        }
      }
    } catch (error) {
      form.submit();
    }
  });

  // "Add a session": show the fields the chosen provider needs.
  const provider = document.getElementById("id_provider");
  const only = {
    twilio: ["twilio_account_sid", "twilio_auth_token", "twilio_from_number", "twilio_messaging_service_sid"],
    neonize: ["proxy_host", "proxy_port", "proxy_username", "proxy_password"],
  };
  function toggleFields() {
    if (!provider) return;
    Object.entries(only).forEach(([name, fields]) => {
      fields.forEach((field) => {
        const row = document.querySelector(`#session-add-form [data-field="${field}"]`);
        if (row) row.hidden = provider.value !== name && !row.classList.contains("has-error");
      });
    });
  }
  if (provider) { provider.addEventListener("change", toggleFields); toggleFields(); }
})();

// Phone simulator: what the simulated phone sent and received, kept up to date from the
// live events (and a slow poll as a safety net); writing and scanning without a reload.
(function () {
  const root = document.getElementById("simulator");
  if (!root) return;
  const chat = document.getElementById("sim-chat");
  const statusBadge = document.getElementById("sim-status");
  const scanForm = document.getElementById("sim-scan-form");
  const writeForm = document.getElementById("sim-write-form");
  const errorBox = document.getElementById("sim-error");
  const phone = root.dataset.phone;
  const labelsNode = document.getElementById("status-labels");
  const labels = labelsNode ? JSON.parse(labelsNode.textContent) : {};
  const sessionId = root.dataset.session;
  let lastId = 0;
  let loading = false;
  let again = false;

  chat.querySelectorAll("[data-id]").forEach((node) => { lastId = Math.max(lastId, Number(node.dataset.id)); });
  chat.scrollTop = chat.scrollHeight;

  function bubble(m) {
    const li = document.createElement("li");
    li.className = `bubble ${m.direction === "in" ? "mine" : "theirs"}`;
    li.dataset.id = m.id;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text || `[${m.kind}]`;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.dir = "ltr";
    meta.textContent = new Date(m.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (m.direction === "in") {
      const ticks = document.createElement("span");
      ticks.className = "ticks";
      ticks.textContent = m.delivered ? " ✓✓" : " ✓";
      meta.appendChild(ticks);
    }
    li.append(text, meta);
    return li;
  }

  function setStatus(status) {
    statusBadge.textContent = labels[status] || status;
    statusBadge.dataset.status = status;
    if (scanForm) scanForm.hidden = status !== "WAIT_QR";
  }

  async function load(all) {
    if (loading) { again = true; return; }
    loading = true;
    try {
      const after = all ? 0 : Math.max(0, lastId - 10); // the last few again: their ticks change
      const url = `${root.dataset.messagesUrl}?phone=${encodeURIComponent(phone)}&after=${after}`;
      const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (!response.ok) return;
      const data = await response.json();
      setStatus(data.session.status);
      if (all) { chat.innerHTML = ""; lastId = 0; }
      for (const m of data.messages) {
        const existing = chat.querySelector(`[data-id="${m.id}"]`);
        const node = bubble(m);
        if (existing) existing.replaceWith(node); else chat.appendChild(node);
        lastId = Math.max(lastId, m.id);
      }
      if (data.messages.length) chat.scrollTop = chat.scrollHeight;
    } finally {
      loading = false;
      if (again) { again = false; load(false); }
    }
  }

  function showErrors(data) {
    const texts = Object.values((data && data.errors) || {}).flat();
    errorBox.textContent = texts.join(" ");
    errorBox.hidden = texts.length === 0;
  }

  async function post(form) {
    const response = await fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    });
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) { showErrors(data); return false; }
    showErrors(null);
    return true;
  }

  writeForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = writeForm.querySelector('[name="text"]');
    if (!input.value.trim()) return;
    if (await post(writeForm)) { input.value = ""; load(false); }
  });
  if (scanForm) {
    scanForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      await post(scanForm);
    });
  }

  document.addEventListener("dashboard:event", (e) => {
    const event = e.detail;
    if ((event.type === "session.status" || event.type === "session.qr") && event.session === sessionId) {
      setStatus(event.type === "session.qr" ? "WAIT_QR" : event.status);
    }
    if (event.type === "message.new" || event.type === "message.status") load(false);
  });
  document.addEventListener("dashboard:connected", () => load(false));
  // Receipts and replies of a session whose events this page cannot tell apart: poll too.
  setInterval(() => load(false), 3000);
})();

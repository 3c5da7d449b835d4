// The dashboard's one websocket: reconnects by itself with backoff.
(function () {
  const status = document.getElementById("live-status");
  const list = document.getElementById("live-events");
  const t = window.DASHBOARD_I18N || {};
  let delay = 1000;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.onopen = () => { delay = 1000; status.textContent = t.live || "live"; status.dataset.state = "live"; };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      document.dispatchEvent(new CustomEvent("dashboard:event", { detail: event }));
      if (list && event.type !== "hello") {
        const item = document.createElement("li");
        item.textContent = `${new Date().toLocaleTimeString()} ${event.type}`;
        list.prepend(item);
        while (list.children.length > 50) list.lastChild.remove();
      }
    };
    socket.onclose = (closed) => {
      if (closed.code === 4401) { status.textContent = t.signedOut || "signed out"; return; }
      status.textContent = t.reconnecting || "reconnecting…";
      status.dataset.state = "down";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();

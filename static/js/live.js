// The dashboard's one websocket per page. Every event is dispatched on `document` as a
// CustomEvent "dashboard:event" (detail = the event). After the socket comes back from a
// drop, "dashboard:reconnected" is dispatched so pages refetch what they missed;
// "dashboard:connected" is dispatched on every open, the first one included.
// Reconnects by itself: 1 s doubling to 30 s, with jitter; stops when signed out.
(function () {
  if (window.dashboardLive) return; // included once per page
  const status = document.getElementById("live-status");
  const list = document.getElementById("live-events");
  const t = window.DASHBOARD_I18N || {};
  const state = { connected: false, connects: 0, socket: null, delay: 1000 };
  window.dashboardLive = state;

  function show(text, name) {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = name;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    state.socket = socket;
    // The server says "hello" once the socket has joined its tenant's events: from then
    // on nothing is missed. Whatever happened before (since the page was rendered, or
    // while the connection was down) was heard by nobody, so pages may refetch on
    // "dashboard:connected" (every time) or "dashboard:reconnected" (after a drop).
    function joined() {
      state.delay = 1000;
      state.connected = true;
      state.connects += 1;
      show(t.live || "live", "live");
      document.dispatchEvent(new CustomEvent("dashboard:connected", { detail: { connects: state.connects } }));
      if (state.connects > 1) {
        document.dispatchEvent(new CustomEvent("dashboard:reconnected", { detail: { connects: state.connects } }));
      }
    }
    socket.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      if (event.type === "hello") joined();
      document.dispatchEvent(new CustomEvent("dashboard:event", { detail: event }));
      if (list && event.type !== "hello") {
        const item = document.createElement("li");
        item.textContent = `${new Date().toLocaleTimeString()} ${event.type}${event.name ? " · " + event.name : ""}${event.status ? " · " + event.status : ""}`;
        list.prepend(item);
        while (list.children.length > 50) list.lastChild.remove();
      }
    };
    socket.onclose = (closed) => {
      state.connected = false;
      if (closed.code === 4401 || closed.code === 4403) {
        show(t.signedOut || "signed out", "down");
        return;
      }
      show(t.reconnecting || "reconnecting…", "down");
      const wait = state.delay * (0.8 + Math.random() * 0.4);
      state.delay = Math.min(state.delay * 2, 30000);
      setTimeout(connect, wait);
    };
  }
  connect();
})();

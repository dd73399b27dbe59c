// MeshBus WebSerial page (design.md §9): lends this browser's serial port to a `webserial`
// slot. It relays bytes blindly between the port and MeshBus's WebSocket; MeshBus runs the
// handshake, probes and sends itself.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const slot = decodeURIComponent(location.pathname.split("/")[2] || "");
const TAKEN_OVER = 4001;
const HELD_FOR_RESTART = 4002;

// `resume`: MeshBus let go of the radio for a restart; the granted port reopens (no prompt)
// once the slot leaves disconnectedForRestart.
const lend = { port: null, socket: null, reader: null, writer: null, toRadio: 0, fromRadio: 0, stopped: true, resume: false };

function say(text) { document.getElementById("message").textContent = text; }
function setFeed(state, label) {
  const feed = document.getElementById("feed");
  feed.dataset.feed = state;
  feed.textContent = label;
}
function bytes(n) { return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB"; }
function counters() {
  document.getElementById("to-radio").textContent = bytes(lend.toRadio);
  document.getElementById("from-radio").textContent = bytes(lend.fromRadio);
}

async function command(body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/api/commands", { method: "POST", headers, body: JSON.stringify(body) });
  const reply = await response.json();
  if (!reply.ok) throw new Error(reply.error.code + ": " + reply.error.message);
  return reply.result;
}

// The port is the user's choice (a prompt), once; MeshBus reconnects reuse it.
async function choose(event) {
  event.preventDefault();
  try {
    lend.port = await navigator.serial.requestPort();
  } catch (error) {
    return say(error.name === "NotFoundError" ? "No port chosen: the radio is not lent." : "The port could not be chosen: " + error.message);
  }
  await start();
}

async function start() {
  lend.resume = false;
  try {
    await lend.port.open({ baudRate: 115200 });
    await lend.port.setSignals({ dataTerminalReady: false, requestToSend: false });
  } catch (error) {
    return say("The port could not be opened (is another program using it?): " + error.message);
  }
  lend.stopped = false;
  document.getElementById("choose-port").disabled = true;
  document.getElementById("stop").disabled = false;
  say("");
  connect();
  pumpFromRadio();
}

function connect() {
  const url = new URL("/webserial/" + encodeURIComponent(slot) + "/relay", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  lend.socket = socket;
  socket.onopen = () => setFeed("live", "lent to MeshBus");
  socket.onmessage = async (message) => {
    if (!(message.data instanceof ArrayBuffer) || !lend.writer) return;
    const chunk = new Uint8Array(message.data);
    lend.toRadio += chunk.length;
    counters();
    try {
      await lend.writer.write(chunk);
    } catch (error) {
      portLost(error);
    }
  };
  socket.onclose = (event) => {
    if (lend.socket !== socket) return;
    lend.socket = null;
    if (event.code === TAKEN_OVER) {
      say("Another browser took the radio over.");
      return stop();
    }
    if (event.code === HELD_FOR_RESTART) {
      say("MeshBus let go of the radio for a restart; the port reopens when MeshBus reconnects.");
      return stop({ resume: true });
    }
    if (event.reason) say(event.reason);
    if (lend.stopped) return;
    setFeed("reconnecting", "reconnecting…");
    setTimeout(() => { if (!lend.stopped) connect(); }, 2000);
  };
}

// Bytes from the radio go to MeshBus as they come. A read error ends one readable (a new
// one follows for errors the port survives); no readable left is an unplugged port.
async function pumpFromRadio() {
  lend.writer = lend.port.writable.getWriter();
  while (!lend.stopped && lend.port.readable) {
    lend.reader = lend.port.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await lend.reader.read();
        if (done) return; // the reader was cancelled: lending stopped
        lend.fromRadio += value.length;
        counters();
        if (lend.socket && lend.socket.readyState === WebSocket.OPEN) lend.socket.send(value);
      }
    } catch (error) {
      if (!lend.port.readable) return portLost(error);
    } finally {
      lend.reader.releaseLock();
    }
  }
  if (!lend.stopped) portLost(null);
}

function portLost(error) {
  if (lend.stopped) return;
  say("The serial port went away (" + (error && error.message ? error.message : "unplugged") + ").");
  if (lend.socket && lend.socket.readyState === WebSocket.OPEN) lend.socket.send(JSON.stringify({ portLost: true }));
  stop();
}

// Stops lending and closes the port; with `resume` the page keeps the port to reopen it.
async function stop({ resume = false } = {}) {
  lend.stopped = true;
  lend.resume = resume;
  const socket = lend.socket;
  lend.socket = null;
  if (socket) socket.close();
  try { await lend.reader?.cancel(); } catch (error) {}
  try { lend.writer?.releaseLock(); } catch (error) {}
  try { await lend.port?.close(); } catch (error) {}
  lend.writer = null;
  setFeed("connecting", resume ? "waiting for MeshBus to reconnect" : "not lent");
  document.getElementById("choose-port").disabled = resume;
  document.getElementById("stop").disabled = !resume;
}

async function showSlot() {
  try {
    const status = await command({ cmd: "status", slot });
    const state = status.slots[slot];
    document.getElementById("state").textContent = state.state;
    document.getElementById("slot-state").textContent = state.ready ? "ready" : state.lastError || state.state;
    document.getElementById("lend").dataset.health = state.ready ? "up" : state.state === "idle" ? "down" : "warn";
    document.getElementById("lend").dataset.state = state.state;
    if (lend.resume && state.state !== "disconnectedForRestart") await start();
  } catch (error) {
    document.getElementById("slot-state").textContent = error.message;
  }
}

document.getElementById("slot").textContent = slot;
if (!("serial" in navigator)) {
  document.getElementById("choose-port").disabled = true;
  say(window.isSecureContext
    ? "This browser has no Web Serial: use Chromium, Chrome or Edge."
    : "Web Serial needs a secure page: open MeshBus as http://localhost:… or over https.");
} else {
  document.getElementById("choose").addEventListener("submit", choose);
  document.getElementById("stop").addEventListener("click", () => stop());
  navigator.serial.addEventListener("disconnect", (event) => { if (event.target === lend.port) portLost(null); });
}
showSlot();
setInterval(showSlot, 2000);

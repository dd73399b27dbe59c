// MeshBus status page: everything it shows comes from the public HTTP API (POST
// /api/commands for ping, status, nodes and sendText; GET /ws for the events), so any other
// client can build the same view.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const HOUR = 3600 * 1000;
const KEPT_EVENTS = 50;
const KEPT_SENDS = 20;
const KEPT_NODES = 100;
const KEPT_EARLY = 100;

// How a link state looks: up (green), warn (amber), down (red), held (grey).
const HEALTH = {
  ready: "up", degraded: "warn", connecting: "warn", configuring: "warn",
  idle: "down", cooldown: "down", backoff: "down", stopped: "down", disconnectedForRestart: "held",
};
const health = (state) => HEALTH[state] || "held";
const LIFECYCLE = ["queued", "sent", "acked"];

const page = {
  broker: null,
  slots: new Map(), // name → {status, history: [{state, since: ms}], nodes: Map, view}
  cursor: new Map(), // slot → last seq applied
  sends: new Map(), // this page's sends, oldest first: packetId → {slot, to, text, wantAck, statuses: []}
  early: new Map(), // statuses of sends not (yet) known to the page: packetId → [status]
  socket: null,
  retryDelay: 500,
  generation: 0, // of the latest load; an older one that is still reading gives way
  loading: false,
};

// --- the API ---

async function command(body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch("/api/commands", { method: "POST", headers, body: JSON.stringify(body) });
  const reply = await response.json();
  if (!reply.ok) throw new Error(reply.error ? reply.error.code + ": " + reply.error.message : "HTTP " + response.status);
  return reply.result;
}

// Reads everything afresh (first load, or a new broker), then follows the events from the
// seq each slot's status was read at, so nothing between the two is missed. A load started
// later wins: an earlier one still reading drops what it read.
async function load() {
  const generation = ++page.generation;
  page.loading = true;
  closeSocket();
  try {
    const ping = await command({ cmd: "ping" });
    const status = await command({ cmd: "status" });
    const slots = [];
    const earlier = [];
    for (const [name, slotStatus] of Object.entries(status.slots)) {
      const slot = { name, status: slotStatus, nodes: new Map(), view: null };
      slot.history = (slotStatus.history || []).map((span) => ({ state: span.state, since: Date.parse(span.since) }));
      const nodes = await command({ cmd: "nodes", slot: name });
      for (const node of Object.values(nodes.nodes || {})) putNode(slot, node);
      // The last events from the replay ring: those up to the status's seq are only listed,
      // later ones are applied as if they had come live.
      const recent = await command({ cmd: "replay", slot: name, sinceSeq: Math.max(0, slotStatus.lastSeq - KEPT_EVENTS) }).catch(() => ({ events: [] }));
      for (const event of recent.events) earlier.push({ ...event, live: event.envelope.seq > slotStatus.lastSeq });
      slots.push(slot);
    }
    if (generation !== page.generation) return;
    page.broker = ping.broker;
    page.cursor.clear();
    page.early.clear();
    for (const old of page.slots.values()) old.view.remove();
    page.slots.clear();
    document.querySelector("#events tbody").replaceChildren();
    pendingEvents.length = 0;
    for (const slot of slots) {
      slot.view = makeSlotView(slot.name);
      page.slots.set(slot.name, slot);
      page.cursor.set(slot.name, slot.status.lastSeq);
      renderSlot(slot);
    }
    earlier.sort((a, b) => Date.parse(a.envelope.time) - Date.parse(b.envelope.time) || a.envelope.seq - b.envelope.seq);
    for (const event of earlier) event.live ? apply(event.topic, event.envelope) : addEvent(event.envelope);
    text("#broker", page.broker);
    renderSlotChoice();
    connect();
  } finally {
    if (generation === page.generation) page.loading = false;
  }
}

function closeSocket() {
  const socket = page.socket;
  page.socket = null;
  if (socket) {
    socket.onclose = null;
    socket.close();
  }
}

function connect() {
  closeSocket();
  const url = new URL("/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  const socket = new WebSocket(url);
  page.socket = socket;
  socket.onopen = () => {
    page.retryDelay = 500;
    const after = [...page.cursor].map(([slot, seq]) => slot + ":" + seq).join(",");
    socket.send(JSON.stringify(after ? { subscribe: [""], after } : { subscribe: [""] }));
    setFeed("live", "live");
  };
  socket.onmessage = (message) => received(JSON.parse(message.data));
  socket.onclose = () => {
    if (page.socket !== socket) return;
    page.socket = null;
    retryLater();
  };
}

// The daemon went away (or the socket did): try again with a growing pause; a different
// broker id means the daemon restarted, so its state is read afresh.
function retryLater() {
  const delay = page.retryDelay;
  page.retryDelay = Math.min(page.retryDelay * 2, 5000);
  setFeed("reconnecting", "reconnecting in " + Math.round(delay / 100) / 10 + " s");
  setTimeout(async () => {
    if (page.loading || page.socket) return; // a load (or another retry) got there first
    try {
      const ping = await command({ cmd: "ping" });
      if (page.loading || page.socket) return;
      if (ping.broker !== page.broker) await load();
      else connect();
    } catch (error) {
      failed(error);
    }
  }, delay);
}

// A refused token will not get better by retrying: say so and stop.
function failed(error) {
  if (/^unauthorized/.test(error.message)) setFeed("reconnecting", "unauthorized: open this page with ?token=T");
  else retryLater();
}

function received(message) {
  if (message.topic && message.envelope) return apply(message.topic, message.envelope);
  // Missed events: read the state again rather than show a wrong one.
  if (message.gap) reloadAll();
}

function reloadAll() {
  load().catch(failed);
}

// --- events ---

function apply(topic, envelope) {
  if (envelope.broker !== page.broker) return reloadAll(); // another daemon answered: read it afresh
  const slot = page.slots.get(envelope.slot);
  if (!slot) return;
  if (envelope.seq <= (page.cursor.get(slot.name) || 0)) return;
  page.cursor.set(slot.name, envelope.seq);
  slot.status.lastSeq = envelope.seq;
  const name = envelope.topic;
  if (name === "meshtastic.connection.state") {
    Object.assign(slot.status, { state: envelope.state, strikes: envelope.strikes ?? slot.status.strikes, ready: envelope.state === "ready" || envelope.state === "degraded" });
    slot.history.push({ state: envelope.state, since: Date.parse(envelope.time) });
  } else if (name === "meshtastic.connection.established" || name === "meshtastic.connection.lost") {
    refreshSoon(); // reconnects, probe and queue figures change with the link
  } else if (name === "meshtastic.node.updated") {
    putNode(slot, envelope.node);
  } else if (name === "meshtastic.send.status") {
    sendStatus(envelope);
  }
  renderSlot(slot);
  addEvent(envelope);
}

function putNode(slot, node) {
  const id = node.user && node.user.id ? node.user.id : "!" + (node.num >>> 0).toString(16).padStart(8, "0");
  slot.nodes.set(id, node);
}

function summary(envelope) {
  switch (envelope.topic) {
    case "meshtastic.receive": {
      const packet = envelope.packet || {};
      const decoded = packet.decoded || {};
      const what = decoded.text !== undefined ? "“" + decoded.text + "”" : decoded.portnum || "encrypted";
      return (packet.fromId || packet.from) + " → " + (packet.toId || packet.to) + ": " + what;
    }
    case "meshtastic.sent": return "packet " + (envelope.packet ? envelope.packet.id : "") + " written to the radio";
    case "meshtastic.connection.state": return (envelope.previous || "–") + " → " + envelope.state + (envelope.retryInSeconds ? " (retry in " + envelope.retryInSeconds.toFixed(1) + " s)" : "");
    case "meshtastic.connection.established": return "ready: " + envelope.nodeCount + " nodes, firmware " + (envelope.firmware || "?");
    case "meshtastic.connection.lost": return "lost: " + envelope.reason;
    case "meshtastic.node.updated": return nodeName(envelope.node);
    case "meshtastic.send.status": return "packet " + envelope.packetId + " " + envelope.status + (envelope.error ? " (" + envelope.error + ")" : "");
    case "meshtastic.log": return envelope.line;
    case "meshtastic.queue.status": return "radio TX queue: " + (envelope.free ?? "?") + " of " + (envelope.maxlen ?? "?") + " free";
    default: return "";
  }
}

// Events are listed in batches, a few times a second, so a busy mesh does not redraw the page per packet.
const pendingEvents = [];

function addEvent(envelope) {
  pendingEvents.push(envelope);
  if (pendingEvents.length > KEPT_EVENTS) pendingEvents.shift();
  scheduleRender();
}

function renderEvents() {
  const body = document.querySelector("#events tbody");
  for (const envelope of pendingEvents.splice(0)) {
    const row = cells([clock(Date.parse(envelope.time)), envelope.slot, envelope.seq, envelope.topic.replace(/^meshtastic\./, ""), summary(envelope)]);
    row.lastChild.className = "wrap";
    row.dataset.topic = envelope.topic;
    body.prepend(row);
  }
  while (body.rows.length > KEPT_EVENTS) body.lastChild.remove();
}

const dirtyNodes = new Set();
let renderTimer = null;

function scheduleRender(slot) {
  if (slot) dirtyNodes.add(slot);
  if (!renderTimer) renderTimer = setTimeout(renderPending, 200);
}

function renderPending() {
  renderTimer = null;
  for (const slot of dirtyNodes) if (page.slots.get(slot.name) === slot) renderNodes(slot);
  dirtyNodes.clear();
  renderEvents();
}

// --- sends ---

async function send(event) {
  event.preventDefault();
  const slot = document.getElementById("send-slot").value;
  const to = document.getElementById("send-to").value.trim();
  const input = document.getElementById("send-text");
  const body = { cmd: "sendText", slot, text: input.value, wantAck: document.getElementById("send-ack").checked };
  if (to) body.to = /^\d+$/.test(to) ? Number(to) : to;
  text("#send-error", "");
  try {
    const result = await command(body);
    const statuses = page.early.get(result.packetId) || [result.status];
    page.early.delete(result.packetId);
    page.sends.set(result.packetId, { slot, to: to || "^all", text: body.text, wantAck: body.wantAck, statuses });
    for (const [packetId] of page.sends) {
      if (page.sends.size <= KEPT_SENDS) break;
      page.sends.delete(packetId);
      document.querySelector('#sends tr[data-packet-id="' + packetId + '"]')?.remove();
    }
    renderSend(result.packetId);
    input.value = "";
  } catch (error) {
    text("#send-error", error.message);
  }
}

// A status may arrive before the command's reply: it is held (a bounded few, since most
// are other clients' sends) and shown once the reply names the send.
function sendStatus(envelope) {
  const status = envelope.status + (envelope.error ? " (" + envelope.error + ")" : "");
  const entry = page.sends.get(envelope.packetId);
  if (entry) {
    entry.statuses.push(status);
    return renderSend(envelope.packetId);
  }
  page.early.set(envelope.packetId, [...(page.early.get(envelope.packetId) || []), status]);
  for (const [packetId] of page.early) {
    if (page.early.size <= KEPT_EARLY) break;
    page.early.delete(packetId);
  }
}

function renderSend(packetId) {
  const entry = page.sends.get(packetId);
  const body = document.querySelector("#sends tbody");
  let row = body.querySelector('tr[data-packet-id="' + packetId + '"]');
  if (!row) {
    row = cells([packetId, entry.slot, entry.to, entry.text, ""]);
    row.dataset.packetId = packetId;
    row.children[3].className = "wrap";
    body.prepend(row);
  }
  const last = entry.statuses[entry.statuses.length - 1] || "";
  const current = last.split(" ")[0];
  row.dataset.status = current;
  const lifecycle = entry.wantAck ? LIFECYCLE : LIFECYCLE.slice(0, 2); // no ACK asked, none comes
  const steps = lifecycle.includes(current) ? lifecycle : [...lifecycle.filter((s) => entry.statuses.includes(s)), last];
  const cell = row.children[4];
  cell.replaceChildren();
  steps.forEach((step, index) => {
    if (index) cell.append(" → ");
    const span = document.createElement("span");
    const reached = entry.statuses.some((s) => s.split(" ")[0] === step.split(" ")[0]);
    span.className = "step" + (reached ? " done" : "") + (step.split(" ")[0] === current ? " current" : "");
    span.textContent = step;
    cell.append(span);
  });
}

// --- rendering ---

function makeSlotView(name) {
  const view = document.getElementById("slot-template").content.firstElementChild.cloneNode(true);
  view.dataset.slot = name;
  view.querySelector(".slot-name").textContent = name;
  document.getElementById("slots").append(view);
  return view;
}

function renderSlot(slot) {
  const status = slot.status;
  const view = slot.view;
  view.dataset.state = status.state;
  view.dataset.health = health(status.state);
  field(view, ".state", status.state);
  field(view, ".transport", status.transport + (status.myNodeNum ? " · !" + (status.myNodeNum >>> 0).toString(16).padStart(8, "0") : ""));
  field(view, ".slot-error", status.lastError || "");
  field(view, ".strikes", status.strikes);
  field(view, ".probe", probeText(status));
  field(view, ".reconnects", status.reconnects);
  field(view, ".queue", status.queueDepth);
  field(view, ".node-count", slot.nodes.size);
  field(view, ".seq", status.lastSeq);
  renderTimeline(slot);
  scheduleRender(slot); // the node table, at most a few times a second
}

function probeText(status) {
  if (status.lastProbeRoundTripMs == null) return status.lastProbeOkAgoSeconds == null ? "–" : Math.round(status.lastProbeOkAgoSeconds) + " s ago";
  const ago = status.lastProbeOkAgoSeconds == null ? "" : ", " + Math.round(status.lastProbeOkAgoSeconds) + " s ago";
  return Math.round(status.lastProbeRoundTripMs) + " ms" + ago;
}

function renderTimeline(slot) {
  const now = Date.now();
  const start = now - HOUR;
  const bar = slot.view.querySelector(".timeline");
  bar.replaceChildren();
  slot.history = slot.history.filter((span, index, all) => index === all.length - 1 || all[index + 1].since > start);
  slot.history.forEach((span, index) => {
    const from = Math.max(span.since, start);
    const to = index + 1 < slot.history.length ? slot.history[index + 1].since : now;
    if (to <= from) return;
    const piece = document.createElement("span");
    piece.className = health(span.state);
    piece.style.left = ((from - start) / HOUR) * 100 + "%";
    piece.style.width = Math.max(((to - from) / HOUR) * 100, 0.15) + "%";
    piece.title = span.state + " from " + clock(span.since);
    bar.append(piece);
  });
}

// The nodes heard last first; a big mesh shows its most recent ones and says how many more there are.
function renderNodes(slot) {
  const body = slot.view.querySelector(".nodes tbody");
  const nodes = [...slot.nodes.entries()].sort((a, b) => (b[1].lastHeard || 0) - (a[1].lastHeard || 0));
  const rows = nodes.slice(0, KEPT_NODES).map(([id, node]) => {
    const battery = node.deviceMetrics && node.deviceMetrics.batteryLevel != null ? node.deviceMetrics.batteryLevel + " %" : "–";
    const row = cells([nodeName(node), id, node.lastHeard ? ago(node.lastHeard * 1000) : "–", node.snr != null ? node.snr.toFixed(2) + " dB" : "–", battery, node.hopsAway ?? "–"]);
    row.dataset.node = id;
    return row;
  });
  if (nodes.length > KEPT_NODES) {
    const more = cells(["… and " + (nodes.length - KEPT_NODES) + " more, heard longer ago"]);
    more.firstChild.colSpan = 6;
    rows.push(more);
  }
  body.replaceChildren(...rows);
}

function renderSlotChoice() {
  const select = document.getElementById("send-slot");
  const chosen = select.value;
  select.replaceChildren(...[...page.slots.keys()].map((name) => new Option(name, name)));
  if (page.slots.has(chosen)) select.value = chosen;
}

function nodeName(node) {
  if (!node) return "";
  return node.user && node.user.longName ? node.user.longName : "!" + (node.num >>> 0).toString(16).padStart(8, "0");
}

function cells(values) {
  const row = document.createElement("tr");
  for (const value of values) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(cell);
  }
  return row;
}

function field(view, selector, value) {
  const element = view.querySelector(selector);
  const content = String(value ?? "–");
  if (element.textContent !== content) element.textContent = content;
}

function text(selector, value) {
  document.querySelector(selector).textContent = value;
}

function setFeed(state, label) {
  const feed = document.getElementById("feed");
  feed.dataset.feed = state;
  feed.textContent = label;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

const ago = (ms) => lasting((Date.now() - ms) / 1000) + " ago";

function lasting(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 90) return seconds + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h";
  return Math.round(seconds / 86400) + " d";
}

// Figures events do not carry (probe round trip, queue depth) are read every few seconds,
// also while the event socket is down (then the state comes from here too).
async function refresh() {
  if (page.loading || !page.broker) return;
  const generation = page.generation;
  try {
    const ping = await command({ cmd: "ping" });
    if (generation !== page.generation || page.loading) return;
    if (ping.broker !== page.broker) return reloadAll();
    text("#uptime", "up " + lasting(ping.uptimeSeconds));
    const status = await command({ cmd: "status" });
    if (generation !== page.generation || page.loading) return;
    const names = Object.keys(status.slots);
    if (names.length !== page.slots.size || names.some((name) => !page.slots.has(name))) return reloadAll(); // slots added or removed by a reload
    for (const [name, fresh] of Object.entries(status.slots)) {
      const slot = page.slots.get(name);
      if (page.socket) {
        const { state, strikes, lastSeq } = slot.status;
        Object.assign(fresh, { state, strikes, lastSeq }); // the events keep these current, in order
      }
      slot.status = fresh;
      renderSlot(slot);
    }
  } catch (error) {
    // The socket's close (or the next retry) handles a daemon that went away.
  }
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 200);
}

document.getElementById("send-form").addEventListener("submit", send);
setInterval(refresh, 5000);
load().catch(failed);

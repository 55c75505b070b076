// The VMN web view: polls /api/v1/topology, draws it with cytoscape.js and
// lists it in the side panel (the lists carry data-* attributes tests read);
// the trace form posts to /api/v1/trace.
"use strict";

const POLL_MS = 500;
const PALETTE = ["#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#e53935", "#6d4c41", "#3949ab",
                 "#c0ca33", "#d81b60"];

const cy = cytoscape({
  container: document.getElementById("graph"),
  wheelSensitivity: 0.3,
  style: [
    { selector: "node", style: { "label": "data(label)", "font-size": 10, "text-wrap": "wrap",
      "text-valign": "bottom", "text-margin-y": 3 } },
    { selector: "node.switch", style: { "shape": "round-rectangle", "width": 46, "height": 30,
      "background-color": "#455a64", "text-valign": "center", "color": "#fff", "text-margin-y": 0 } },
    { selector: "node.switch.disconnected", style: { "background-color": "#b0bec5", "color": "#37474f" } },
    { selector: "node.vm", style: { "background-color": "data(color)", "width": 22, "height": 22 } },
    { selector: "node.vm.away", style: { "border-width": 2, "border-color": "#c62828", "border-style": "dashed" } },
    { selector: "node.host", style: { "background-color": "#90a4ae", "width": 14, "height": 14 } },
    { selector: "node.lb", style: { "shape": "diamond", "background-color": "#fdd835", "width": 30, "height": 30 } },
    { selector: "node.router", style: { "shape": "hexagon", "background-color": "#26a69a", "width": 32,
      "height": 32 } },
    { selector: "node.uplink", style: { "shape": "triangle", "background-color": "#7e57c2" } },
    { selector: "edge", style: { "width": 2, "line-color": "#90a4ae", "curve-style": "bezier" } },
    { selector: "edge.link", style: { "width": 4, "line-color": "#2e7d32" } },
    { selector: "edge.link.down", style: { "line-color": "#c62828", "line-style": "dashed" } },
    { selector: "edge.backend", style: { "line-style": "dotted", "target-arrow-shape": "triangle",
      "line-color": "#2e7d32", "target-arrow-color": "#2e7d32" } },
    { selector: "edge.backend.down", style: { "line-color": "#c62828", "target-arrow-color": "#c62828" } },
    { selector: "edge.backend.unknown", style: { "line-color": "#9e9e9e", "target-arrow-color": "#9e9e9e" } },
    { selector: "edge.joins", style: { "line-style": "dashed", "line-color": "#26a69a" } },
  ],
});
window.vmnGraph = cy;

// -- model -> graph elements -------------------------------------------------
function colours(topo) {
  const out = {};
  topo.networks.forEach((n, i) => { out[n.name] = PALETTE[i % PALETTE.length]; });
  return out;
}

function elements(topo) {
  const colour = colours(topo);
  const els = [];
  const node = (id, cls, label, extra) => els.push({ group: "nodes", classes: cls,
                                                    data: Object.assign({ id: id, label: label }, extra || {}) });
  const edge = (id, cls, a, b) => els.push({ group: "edges", classes: cls, data: { id: id, source: a, target: b } });
  for (const s of topo.switches) {
    node("sw:" + s.name, "switch " + (s.connected ? "connected" : "disconnected"), s.name);
  }
  for (const l of topo.links) {
    if (topo.switches.some((s) => s.name === l.a.switch) &&
        topo.switches.some((s) => s.name === l.b.switch)) {
      edge("link:" + l.id, "link " + (l.up ? "up" : "down"), "sw:" + l.a.switch, "sw:" + l.b.switch);
    }
  }
  for (const vm of topo.vms) {
    const label = vm.name + (vm.ip ? "\n" + vm.ip.split("/")[0] : "");
    node("vm:" + vm.name, "vm" + (vm.location ? "" : " away"), label, { color: colour[vm.network] || "#999" });
    if (topo.switches.some((s) => s.name === vm.switch)) {
      edge("att:" + vm.name, "attach", "vm:" + vm.name, "sw:" + vm.switch);
    }
  }
  for (const h of topo.hosts) {
    node("host:" + h.mac + "@" + h.vlan, "host", h.mac);
    edge("hatt:" + h.mac + "@" + h.vlan, "attach", "host:" + h.mac + "@" + h.vlan, "sw:" + h.switch);
  }
  for (const lb of topo.load_balancers) {
    node("lb:" + lb.name, "lb", lb.name + "\n" + lb.vip + ":" + lb.port);
    for (const b of lb.backends) {
      const state = b.up === null ? "unknown" : (b.up ? "up" : "down");
      if (b.vm) { edge("be:" + lb.name + ":" + b.ip, "backend " + state, "lb:" + lb.name, "vm:" + b.vm); }
    }
  }
  for (const r of topo.routers) {
    node("rt:" + r.name, "router", r.name);
    const switches = new Set(topo.vms.filter((v) => (r.networks || []).includes(v.network)).map((v) => v.switch));
    for (const s of switches) { edge("rj:" + r.name + ":" + s, "joins", "rt:" + r.name, "sw:" + s); }
  }
  for (const u of topo.uplinks) {
    node("up:" + u.name, "uplink", u.name + (u.ip ? "\n" + u.ip : ""));
    if (u.switch) { edge("uj:" + u.name, "joins", "up:" + u.name, "sw:" + u.switch); }
  }
  return els;
}

function drawGraph(topo) {
  const wanted = elements(topo);
  const ids = new Set(wanted.map((e) => e.data.id));
  let structural = false;
  cy.batch(() => {
    cy.elements().forEach((el) => { if (!ids.has(el.id())) { el.remove(); structural = true; } });
    for (const e of wanted.filter((x) => x.group === "nodes").concat(wanted.filter((x) => x.group === "edges"))) {
      const el = cy.getElementById(e.data.id);
      if (el.empty()) { cy.add(e); structural = true; continue; }
      el.data(e.data);
      el.classes(e.classes);
    }
  });
  if (structural) {
    cy.layout({ name: "cose", animate: false, randomize: false, nodeRepulsion: () => 8000,
                idealEdgeLength: () => 60 }).run();
    cy.fit(undefined, 30);
  }
}

// -- side panel --------------------------------------------------------------
function item(text, attrs) {
  const li = document.createElement("li");
  li.textContent = text;
  for (const [k, v] of Object.entries(attrs)) { li.setAttribute(k, v); }
  return li;
}

function fill(id, items) {
  document.getElementById(id).replaceChildren(...items);
}

function drawLists(topo) {
  const colour = colours(topo);
  fill("switches", topo.switches.map((s) => item(`${s.name} (${s.dpid}) ${s.flows} flows`,
    { "data-switch": s.name, "data-state": s.connected ? "connected" : "disconnected" })));
  fill("links", topo.links.map((l) => item(`${l.a.switch}:${l.a.port} — ${l.b.switch}:${l.b.port} ${l.up ? "up" : "down"}`,
    { "data-link": l.id, "data-state": l.up ? "up" : "down" })));
  fill("vms", topo.vms.map((vm) => {
    const where = vm.location ? `at ${vm.location.switch}:${vm.location.port}` : "not seen";
    const li = item(`${vm.name} ${vm.network} ${vm.ip || ""} ${where}`,
      { "data-vm": vm.name, "data-network": vm.network, "data-state": vm.location ? "up" : "unknown" });
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = colour[vm.network] || "#999";
    li.prepend(dot);
    return li;
  }));
  document.getElementById("lb-section").hidden = topo.load_balancers.length === 0;
  fill("lbs", topo.load_balancers.flatMap((lb) => lb.backends.map((b) => {
    const state = b.up === null ? "unknown" : (b.up ? "up" : "down");
    return item(`${lb.name} ${lb.vip}:${lb.port} → ${b.vm || b.ip} (w ${b.weight}) ${state}`,
      { "data-lb": lb.name, "data-backend": b.ip, "data-state": state });
  })));
  const from = document.getElementById("trace-from");
  const names = topo.vms.map((v) => v.name);
  if (Array.from(from.options).map((o) => o.value).join() !== names.join()) {
    const keep = from.value;
    from.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.includes(keep)) { from.value = keep; }
  }
}

// -- polling -----------------------------------------------------------------
let updates = 0;
async function poll() {
  const status = document.getElementById("status");
  try {
    const resp = await fetch("/api/v1/topology", { cache: "no-store" });
    if (!resp.ok) { throw new Error(`HTTP ${resp.status}`); }
    const topo = await resp.json();
    drawLists(topo);
    drawGraph(topo);
    updates += 1;
    status.dataset.updates = String(updates);
    status.dataset.state = "ok";
    status.textContent = `${topo.config || "zero-config"} · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = `controller unreachable (${err.message}); retrying`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// -- trace form --------------------------------------------------------------
document.getElementById("trace-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("trace-result");
  const body = {
    from: document.getElementById("trace-from").value,
    to: document.getElementById("trace-to").value.trim(),
    protocol: document.getElementById("trace-proto").value,
  };
  const port = document.getElementById("trace-port").value;
  if (port !== "" && body.protocol !== "icmp") { body.port = Number(port); }
  out.textContent = "tracing…";
  delete out.dataset.verdict;
  try {
    const resp = await fetch("/api/v1/trace", { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify(body) });
    const data = await resp.json();
    if (!resp.ok) {
      out.dataset.verdict = "error";
      out.textContent = (data.errors || [data.detail]).join("\n");
      return;
    }
    out.dataset.verdict = data.verdict;
    out.textContent = data.text;
  } catch (err) {
    out.dataset.verdict = "error";
    out.textContent = String(err);
  }
});

poll();

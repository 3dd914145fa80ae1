// Workflow and flow graphs with cytoscape and the dagre layout (vendored globals).
// Nodes are shaped and coloured by kind, outlined by status; edges are styled by kind.

const KINDS = {
  task: ["round-rectangle", "#dbe7f5"],
  decision: ["diamond", "#fbe7b5"],
  approval: ["round-hexagon", "#d5efd9"],
  negotiation: ["round-octagon", "#e6dcf5"],
  event: ["round-tag", "#d3efef"],
  timer: ["ellipse", "#fde0c8"],
  subworkflow: ["barrel", "#dcdff7"],
  noop: ["ellipse", "#eceff1"],
  agent: ["round-pentagon", "#f7d9e6"],
  // event-step projects (flows)
  api: ["cut-rectangle", "#dbe7f5"],
  cron: ["ellipse", "#fde0c8"],
};

const STATUS = {
  pending: "#9aa5b1",
  scheduled: "#6b8cc7",
  running: "#2f6fde",
  retrying: "#d9822b",
  waiting: "#d9a400",
  succeeded: "#2e9d4f",
  failed: "#d1382f",
  skipped: "#b7bec6",
  cancelled: "#5c6670",
};

const EDGES = {
  needs: { color: "#8795a1", style: "solid" },
  next: { color: "#44515c", style: "solid" },
  transition: { color: "#2f6fde", style: "solid" },
  branch: { color: "#b07d00", style: "solid" },
  loop: { color: "#d9822b", style: "solid" },
  on: { color: "#d1382f", style: "solid" },
  compensate: { color: "#8a5cc7", style: "dashed" },
  topic: { color: "#1d8b8b", style: "solid" },
};

const MAX_FIT_ZOOM = 1.25; // a small graph is not blown up to fill its box
const MIN_HEIGHT = 220;
const MAX_HEIGHT = 720;
const PAD = 16;

let registered = false;

function register() {
  if (registered) return;
  if (!window.cytoscape || !window.cytoscapeDagre) {
    throw new Error("the graph libraries did not load (/ui/vendor/*.js)");
  }
  window.cytoscape.use(window.cytoscapeDagre);
  registered = true;
}

const nodeWidth = (node) => Math.max(70, 8 * String(node.data("label")).length + 28);

function style() {
  const rules = [
    {
      selector: "node",
      style: {
        label: "data(label)",
        "text-valign": "center",
        "text-halign": "center",
        "font-size": 12,
        "font-family": "system-ui, sans-serif",
        color: "#1f2a33",
        width: nodeWidth,
        height: 38,
        "border-width": 2,
        "border-color": "#8795a1",
        "background-color": "#dbe7f5",
        shape: "round-rectangle",
      },
    },
    { selector: "node[kind = 'decision']", style: { height: 56 } },
    { selector: "node[?inactive]", style: { opacity: 0.45, "border-style": "dashed" } },
    { selector: "node:selected", style: { "overlay-color": "#2f6fde", "overlay-opacity": 0.15 } },
    {
      selector: "edge",
      style: {
        width: 1.6,
        "curve-style": "bezier",
        "target-arrow-shape": "triangle",
        "line-color": "#8795a1",
        "target-arrow-color": "#8795a1",
        label: "data(label)",
        "font-size": 10,
        color: "#44515c",
        "text-background-color": "#ffffff",
        "text-background-opacity": 0.85,
        "text-rotation": "autorotate",
      },
    },
    { selector: "edge[?virtual]", style: { "line-style": "dashed", "line-dash-pattern": [6, 4] } },
  ];
  for (const [kind, [shape, fill]] of Object.entries(KINDS)) {
    rules.push({ selector: `node[kind = '${kind}']`, style: { shape, "background-color": fill } });
  }
  for (const [status, color] of Object.entries(STATUS)) {
    const width = status === "pending" ? 2 : 4;
    rules.push({
      selector: `node[status = '${status}']`,
      style: { "border-color": color, "border-width": width },
    });
  }
  for (const [kind, { color, style: line }] of Object.entries(EDGES)) {
    rules.push({
      selector: `edge[kind = '${kind}']`,
      style: { "line-color": color, "target-arrow-color": color, "line-style": line },
    });
  }
  rules.push({
    selector: "edge[kind = 'loop']",
    style: { "curve-style": "unbundled-bezier", "control-point-distances": 60 },
  });
  return rules;
}

function elements(graph) {
  const ids = new Set(graph.nodes.map((n) => n.id));
  const nodes = graph.nodes.map((n) => ({
    data: {
      id: n.id,
      label: n.label || n.id,
      kind: n.kind,
      status: n.status || "",
      inactive: n.active === false,
    },
  }));
  const edges = graph.edges
    .filter((e) => ids.has(e.source) && ids.has(e.target))
    .map((e, i) => ({
      data: {
        id: `e${i}:${e.source}>${e.target}`,
        source: e.source,
        target: e.target,
        kind: e.kind,
        label: e.label || "",
        virtual: Boolean(e.virtual),
      },
    }));
  return [...nodes, ...edges];
}

/**
 * Draw `graph` ({nodes, edges} of the API) into `container`; returns the cytoscape instance.
 * `onSelect(nodeId)` hears taps on nodes. Zoom and pan with the mouse or the trackpad.
 */
export function drawGraph(container, graph, { onSelect, direction = "LR" } = {}) {
  register();
  const cy = window.cytoscape({
    container,
    elements: elements(graph),
    style: style(),
    minZoom: 0.2,
    maxZoom: 3,
    boxSelectionEnabled: false,
    autoungrabify: true,
  });
  layOut(cy, graph, direction, container);
  if (onSelect) cy.on("tap", "node", (event) => onSelect(event.target.id()));
  if (container.isConnected) {
    // not a page left behind while it loaded
    window.__wayang.graphs.push(cy);
    window.__wayang.cy = cy;
  }
  return cy;
}

/**
 * Lay `cy` out with dagre in `direction`, or across it when that shows the graph clearly larger
 * (a long chain reads better top to bottom), then size the box to the graph: no larger than
 * needed, no smaller than MIN_HEIGHT, and a small graph is not blown up to fill it.
 */
function layOut(cy, graph, direction, container) {
  const rankSep = graph.edges.some((e) => e.label) ? 90 : 50; // room for edge labels
  const width = (container.clientWidth || 800) - 2 * PAD;
  const run = (rankDir) => {
    cy.layout({ name: "dagre", rankDir, nodeSep: 30, rankSep, edgeSep: 10, fit: false }).run();
    const box = cy.elements().boundingBox();
    const zoom = Math.min(MAX_FIT_ZOOM, width / box.w, (MAX_HEIGHT - 2 * PAD) / box.h);
    return { rankDir, zoom, height: box.h * zoom + 2 * PAD };
  };
  const first = run(direction);
  const across = run(direction === "LR" ? "TB" : "LR");
  const best = across.zoom > first.zoom * 1.15 ? across : run(direction);
  container.style.height = `${Math.max(MIN_HEIGHT, Math.ceil(best.height))}px`;
  cy.resize();
  cy.zoom(best.zoom);
  cy.center();
}

/** Recolour the nodes of `cy` from fresh statuses ({nodes} with `status`), without re-layout. */
export function paintStatuses(cy, graph) {
  for (const node of graph.nodes) {
    cy.getElementById(node.id).data("status", node.status || "");
  }
}

/** The legend of node kinds (only those present) and edge kinds. */
export function legend(graph) {
  const kinds = [...new Set(graph.nodes.map((n) => n.kind))];
  const edges = [...new Set(graph.edges.map((e) => (e.virtual ? `${e.kind} (virtual)` : e.kind)))];
  const list = document.createElement("ul");
  list.className = "legend";
  for (const kind of kinds) {
    const item = document.createElement("li");
    const [, fill] = KINDS[kind] || KINDS.task;
    item.innerHTML = `<i class="swatch" style="background:${fill}"></i>`;
    item.append(kind);
    list.append(item);
  }
  for (const kind of edges) {
    const item = document.createElement("li");
    const { color } = EDGES[kind.split(" ")[0]] || EDGES.needs;
    const dashed = kind.includes("virtual") || kind === "compensate" ? "dashed" : "solid";
    item.innerHTML = `<i class="line" style="border-top:2px ${dashed} ${color}"></i>`;
    item.append(kind);
    list.append(item);
  }
  return list;
}

/** Forget the graphs of a page left behind (called by the router). */
export function forgetGraphs() {
  for (const cy of window.__wayang.graphs) cy.destroy();
  window.__wayang.graphs = [];
  window.__wayang.cy = null;
}

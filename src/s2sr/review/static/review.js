// s2sr review: the page's script (plain JavaScript, no build step, no library).
"use strict";

const TOKEN = document.querySelector('meta[name="s2sr-token"]').content;
const form = document.getElementById("filters");
const grid = document.getElementById("grid");
const detail = document.getElementById("detail");
const state = { offset: 0, rows: [], selected: 0, matched: 0, options: null, hasNir: false,
                version: null, decisions: 0, pending: 0 };
const POLL_MS = 2000;  // how often the page asks whether the dataset changed on disk
const VIEWS = [["lr", "Sentinel-2"], ["hr", "reference"], ["diff", "difference"]];

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 6000);
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function fmt(value, digits = 3) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

// --- filters ------------------------------------------------------------------------------

function fillSelect(name, values) {
  const select = form.elements[name];
  select.replaceChildren(el("option", { value: "" }, "all"));
  for (const v of values) select.append(el("option", { value: v }, v || "(none)"));
}

function buildFilters(options) {
  for (const name of ["site", "split", "kind", "reason"]) fillSelect(name, options.values[name]);
  const sort = form.elements.sort;
  const ranges = document.getElementById("range-inputs");
  for (const stat of options.stats) {
    sort.append(el("option", { value: stat }, stat));
    ranges.append(el("span", {}, stat));
    for (const side of ["min", "max"]) {
      ranges.append(el("input", { type: "number", step: "any", name: `${side}_${stat}`,
                                  placeholder: side, "aria-label": `${side} ${stat}` }));
    }
  }
}

function queryString(offset, limit) {
  const params = new URLSearchParams();
  for (const name of ["site", "split", "kind", "reason"]) {
    if (form.elements[name].value) params.append(name, form.elements[name].value);
  }
  for (const status of form.elements.status.value.split(",").filter(Boolean)) {
    params.append("status", status);
  }
  for (const stat of state.options.stats) {
    for (const side of ["min", "max"]) {
      const v = form.elements[`${side}_${stat}`].value;
      if (v !== "") params.append(`${side}_${stat}`, v);
    }
  }
  if (form.elements.sort.value) params.append("sort", form.elements.sort.value);
  if (form.elements.desc.checked) params.append("desc", "1");
  params.append("offset", offset);
  params.append("limit", limit);
  return params.toString();
}

function pageSize() { return Number(form.elements.limit.value); }

// --- the filters in the address (#...): a reload or a shared link keeps them --------------

const HASH_FIELDS = ["site", "split", "kind", "status", "reason", "sort", "limit"];

function saveHash() {
  const params = new URLSearchParams();
  for (const name of HASH_FIELDS) {
    const select = form.elements[name];
    const initial = [...select.options].find((o) => o.defaultSelected) || select.options[0];
    if (select.value && select.value !== initial?.value) params.set(name, select.value);
  }
  for (const stat of state.options.stats) {
    for (const side of ["min", "max"]) {
      const v = form.elements[`${side}_${stat}`].value;
      if (v !== "") params.set(`${side}_${stat}`, v);
    }
  }
  if (form.elements.desc.checked) params.set("desc", "1");
  if (form.elements.nir.checked) params.set("nir", "1");
  if (state.offset) params.set("offset", String(state.offset));
  const hash = params.toString();
  if (hash !== location.hash.slice(1)) {
    history.replaceState(null, "", hash ? `#${hash}` : location.pathname);
  }
}

function restoreHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const name of HASH_FIELDS) {
    const value = params.get(name);
    const select = form.elements[name];
    if (value !== null && [...select.options].some((o) => o.value === value)) {
      select.value = value;
    }
  }
  for (const stat of state.options.stats) {
    for (const side of ["min", "max"]) {
      const value = params.get(`${side}_${stat}`);
      if (value !== null && value !== "" && Number.isFinite(Number(value))) {
        form.elements[`${side}_${stat}`].value = value;
      }
    }
  }
  form.elements.desc.checked = params.get("desc") === "1";
  form.elements.nir.checked = params.get("nir") === "1" && state.hasNir;
  const offset = Number(params.get("offset") || 0);
  return Number.isInteger(offset) && offset > 0 ? offset : 0;
}

// --- patch ids: the part that tells them apart always shows -------------------------------

function idParts(id) {
  // "<lr>__<hr>__<hash>:<row>:<col>": pairs differ in the hash, patches in row:col, so
  // the tail from the hash on is never cut; the head gets an ellipsis when it must
  const cut = id.lastIndexOf("__");
  let tail = cut >= 0 ? id.slice(cut + 2) : id.split(":").slice(-3).join(":");
  if (tail.length > 40) tail = tail.slice(-40);
  return [id.slice(0, id.length - tail.length), tail];
}

// --- the grid -----------------------------------------------------------------------------

function imageURL(id, view, size) {
  const mode = form.elements.nir.checked && state.hasNir ? "nir" : "true";
  const q = new URLSearchParams({ id, view, mode, size });
  return `/api/image?${q}`;
}

function badge(row) {
  const label = row.reason ? `${row.status}: ${row.reason}` : row.status;
  return el("span", { class: `badge ${row.status}`, title: label }, label);
}

function card(row, k) {
  const node = el("article", { class: "card", "data-id": row.patch_id, "data-k": k,
                               tabindex: "-1" });
  const imgs = el("div", { class: "imgs" });
  for (const [view, label] of VIEWS) {
    const figure = el("figure");
    figure.append(el("img", { src: imageURL(row.patch_id, view, "thumb"), loading: "lazy",
                              alt: `${label} ${row.patch_id}`, "data-view": view }),
                  el("figcaption", {}, label));
    imgs.append(figure);
  }
  const meta = el("div", { class: "meta" });
  const [head, tail] = idParts(row.patch_id);
  const id = el("span", { class: "id", title: row.patch_id });
  id.append(el("span", { class: "id-head" }, head), el("span", { class: "id-tail" }, tail));
  meta.append(id, badge(row));
  const stats = el("div", { class: "stats" },
    `corr ${fmt(row.corr)} · ssim ${fmt(row.ssim)} · shift ${fmt(row.shift, 2)} · ` +
    `resid ${fmt(row.residual, 4)} · cloud ${fmt(row.cloud, 2)} · nodata ${fmt(row.nodata, 2)}`);
  const buttons = el("div", { class: "buttons" });
  buttons.append(el("button", { type: "button", class: "accept", "data-decide": "accepted" }, "accept"),
                 el("button", { type: "button", class: "reject", "data-decide": "rejected" }, "reject"),
                 el("button", { type: "button", "data-decide": "auto" }, "auto"));
  node.append(imgs, meta, stats, buttons);
  return node;
}

function renderGrid() {
  grid.replaceChildren(...state.rows.map(card));
  const pages = Math.max(1, Math.ceil(state.matched / pageSize()));
  const page = Math.floor(state.offset / pageSize()) + 1;
  for (const label of document.querySelectorAll(".page-label")) {
    label.textContent = `page ${page} of ${pages}`;
  }
  select(Math.min(state.selected, state.rows.length - 1), false);
}

function select(k, scroll = true) {
  if (k < 0 || k >= state.rows.length) return;
  for (const node of grid.querySelectorAll(".card.selected")) node.classList.remove("selected");
  state.selected = k;
  const node = grid.children[k];
  node.classList.add("selected");
  if (scroll) node.scrollIntoView({ block: "nearest" });
}

function updateRow(row) {
  const k = state.rows.findIndex((r) => r.patch_id === row.patch_id);
  if (k < 0) return;
  state.rows[k] = { ...state.rows[k], status: row.status, reason: row.reason, note: row.note };
  const node = grid.children[k];
  node.querySelector(".badge").replaceWith(badge(state.rows[k]));
}

// --- counts and histograms ----------------------------------------------------------------

function renderSummary(data) {
  const counts = Object.entries(data.counts.status).map(([k, v]) => `${k} ${v}`).join(", ");
  document.getElementById("summary").textContent =
    `${data.matched} of ${data.total} patches match${counts ? ` (${counts})` : ""}`;
  const box = document.getElementById("histograms");
  box.replaceChildren();
  for (const stat of state.options.stats) {
    const figure = el("figure");
    const canvas = el("canvas", { width: 168, height: 60, "data-stat": stat });
    const side = state.options.threshold_side[stat];
    const limits = state.options.thresholds[stat].map((t) => fmt(t, 3)).join(", ");
    figure.append(canvas, el("figcaption", {},
      `${stat} (${side} ${limits}) · ${data.histograms[stat].missing} n/a`));
    box.append(figure);
    drawHistogram(canvas, data.histograms[stat], state.options.thresholds[stat]);
  }
}

function drawHistogram(canvas, hist, thresholds) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const lo = hist.edges[0], hi = hist.edges[hist.edges.length - 1];
  const top = Math.max(1, ...hist.counts);
  const barW = width / hist.counts.length;
  ctx.fillStyle = "#57606a";
  hist.counts.forEach((c, i) => {
    const h = Math.round((height - 12) * Math.sqrt(c / top));  // sqrt: small bins stay visible
    ctx.fillRect(i * barW + 0.5, height - 12 - h, Math.max(1, barW - 1), h);
  });
  ctx.fillStyle = "#1f2328";
  ctx.font = "9px sans-serif";
  ctx.fillText(fmt(lo, 3), 1, height - 2);
  const label = fmt(hi, 3);
  ctx.fillText(label, width - ctx.measureText(label).width - 1, height - 2);
  ctx.strokeStyle = "#c62828";
  ctx.setLineDash([3, 2]);
  for (const t of thresholds) {
    if (t < lo || t > hi) continue;
    const x = Math.round(((t - lo) / (hi - lo || 1)) * width) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height - 12); ctx.stroke();
  }
}

// --- loading ------------------------------------------------------------------------------

async function load(offset = state.offset, keepSelection = false) {
  try {
    const data = await getJSON(`/api/patches?${queryString(offset, pageSize())}`);
    if (data.rows.length === 0 && data.offset > 0 && data.matched > 0) {
      // the page is past the end (a shared link, or fewer matches now): the last page
      return load(Math.floor((data.matched - 1) / pageSize()) * pageSize(), keepSelection);
    }
    state.offset = data.offset;
    state.rows = data.rows;
    state.matched = data.matched;
    state.version = data.version;
    if (!keepSelection) state.selected = 0;
    renderGrid();
    renderSummary(data);
    saveHash();
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    showError(err.message);
  }
}

async function refreshSummary() {
  try {
    renderSummary(await getJSON(`/api/patches?${queryString(0, 1)}`));
  } catch (err) {
    showError(err.message);
  }
}

// --- changes made elsewhere (a terminal, another tab, a rebuild) --------------------------

async function poll() {
  if (!document.hidden && state.version !== null && !state.pending) {
    try {
      const seen = state.decisions;
      const { version } = await getJSON("/api/version");
      // a decision of this page started meanwhile: its answer brings the version
      if (version !== state.version && !state.pending && seen === state.decisions) {
        state.version = version;
        state.options = await getJSON("/api/options");
        await load(state.offset, true);
        document.body.dataset.refreshed =
          String(Number(document.body.dataset.refreshed || 0) + 1);
      }
    } catch (err) {
      // the server stopped: say so once, keep trying
      if (!document.body.dataset.offline) showError(err.message || "the server stopped");
      document.body.dataset.offline = "1";
      setTimeout(poll, POLL_MS);
      return;
    }
    delete document.body.dataset.offline;
  }
  setTimeout(poll, POLL_MS);
}

function turnPage(step) {
  const next = state.offset + step * pageSize();
  if (next < 0 || next >= state.matched) return false;
  load(next);
  return true;
}

// --- decisions ----------------------------------------------------------------------------

async function decide(k, status, note = "") {
  const row = state.rows[k];
  if (!row) return;
  const node = grid.children[k];
  node.classList.add("pending");
  state.decisions += 1;
  state.pending += 1;
  // move on at once (the server saves under the dataset's lock, which may take a while
  // on a large dataset); the card's badge changes when the decision is saved
  if (!detail.open) {
    if (k + 1 < state.rows.length) select(k + 1);
    else if (state.offset + state.rows.length < state.matched) turnPage(1);
  }
  let response;
  try {
    response = await fetch("/api/decide", {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-s2sr-token": TOKEN },
      body: JSON.stringify({ id: row.patch_id, status, note }),
    });
  } finally {
    state.pending -= 1;
  }
  node.classList.remove("pending");
  if (!response.ok) { showError(await response.text()); return; }
  const data = await response.json();
  state.version = data.version;  // our own change: no reload for it
  updateRow(data.row);
  if (detail.open && state.rows[state.selected]?.patch_id === row.patch_id) showDetail(k);
  refreshSummary();
  document.body.dataset.decided = String(Number(document.body.dataset.decided || 0) + 1);
}

// --- detail view --------------------------------------------------------------------------

async function showDetail(k) {
  const row = state.rows[k];
  if (!row) return;
  select(k);
  document.getElementById("detail-title").textContent = row.patch_id;
  for (const view of ["lr", "hr", "diff"]) {
    document.getElementById(`d-${view}`).src = imageURL(row.patch_id, view, "full");
  }
  const data = await getJSON(`/api/patch?${new URLSearchParams({ id: row.patch_id })}`);
  const table = document.getElementById("detail-stats");
  table.replaceChildren();
  const r = data.row;
  const items = [["status", r.reason ? `${r.status}: ${r.reason}` : r.status],
    ["automatic", r.auto_reason ? `${r.auto_status}: ${r.auto_reason}` : r.auto_status],
    ["site / split / kind", `${r.site} / ${r.split} / ${r.kind}`],
    ...state.options.stats.map((s) => [s, fmt(r[s], 4)]),
    ["input window (row, col, size)", `${r.lr_row}, ${r.lr_col}, ${r.lr_size}`],
    ["CRS", r.crs], ["scenes", `${r.lr_scene || ""} / ${r.hr_scene || ""}`],
    ["pair shift (px) / time gap (d)",
     `${(data.pair.shift_px || []).map((v) => fmt(v, 2)).join(", ")} / ${data.pair.time_gap_days}`]];
  for (const [k2, v] of items) {
    const tr = el("tr");
    tr.append(el("th", {}, k2), el("td", {}, String(v)));
    table.append(tr);
  }
  document.getElementById("note").value = r.note || "";
  if (!detail.open) detail.showModal();
}

// --- events -------------------------------------------------------------------------------

grid.addEventListener("click", (event) => {
  const node = event.target.closest(".card");
  if (!node) return;
  const k = Number(node.dataset.k);
  const button = event.target.closest("button[data-decide]");
  if (button) { decide(k, button.dataset.decide); return; }
  select(k, false);
});
grid.addEventListener("dblclick", (event) => {
  const node = event.target.closest(".card");
  if (node && !event.target.closest("button")) showDetail(Number(node.dataset.k));
});
for (const button of detail.querySelectorAll("button[data-decide]")) {
  button.addEventListener("click", () => decide(state.selected, button.dataset.decide,
                                                document.getElementById("note").value));
}
document.getElementById("detail-close").addEventListener("click", () => detail.close());
for (const button of document.querySelectorAll(".pager button")) {
  button.addEventListener("click", () => turnPage(Number(button.dataset.page)));
}
form.addEventListener("change", (event) => {
  if (event.target.name === "nir") { load(state.offset, true); return; }
  load(0);
});
form.addEventListener("submit", (event) => event.preventDefault());

function columns() {
  if (grid.children.length < 2) return 1;
  const top = grid.children[0].offsetTop;
  let n = 0;
  while (n < grid.children.length && grid.children[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest("input, textarea, select");
  if (typing && event.key !== "Escape") return;
  const k = state.selected;
  const actions = {
    a: () => decide(k, "accepted", detail.open ? document.getElementById("note").value : ""),
    r: () => decide(k, "rejected", detail.open ? document.getElementById("note").value : ""),
    u: () => decide(k, "auto"),
    n: () => { form.elements.nir.checked = !form.elements.nir.checked; load(state.offset, true); },
    j: () => select(k + 1), k: () => select(k - 1),
    ArrowRight: () => select(k + 1), ArrowLeft: () => select(k - 1),
    ArrowDown: () => select(Math.min(k + columns(), state.rows.length - 1)),
    ArrowUp: () => select(Math.max(k - columns(), 0)),
    Enter: () => showDetail(k),
    Escape: () => detail.open && detail.close(),
    PageDown: () => turnPage(1), PageUp: () => turnPage(-1),
  };
  const action = actions[event.key];
  if (action) { event.preventDefault(); action(); }
});

(async function start() {
  try {
    state.options = await getJSON("/api/options");
  } catch (err) {
    showError(err.message);
    return;
  }
  document.getElementById("dataset").textContent = state.options.dataset;
  state.hasNir = state.options.has_nir;
  form.elements.nir.disabled = !state.hasNir;
  buildFilters(state.options);
  const offset = restoreHash();
  await load(offset);
  window.addEventListener("hashchange", () => load(restoreHash()));
  setTimeout(poll, POLL_MS);
})();

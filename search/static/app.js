// dinosearch web page: plain DOM, no build step, no network beyond this server.
// Text from the library (paths, messages) only ever goes in through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const THUMB_PX = 256;
const POLL_MS = 500;

// --- talking to the API ------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.code = body && body.error ? body.error.code : "http";
    throw error;
  }
  return body;
}

function say(text, isError = false, el = $("status")) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function refreshStats() {
  try {
    const info = await api("/api/stats");
    $("stats").textContent = `${info.images} images · ${info.model || "no model yet"}`;
  } catch (err) {
    $("stats").textContent = err.code === "no_library" ? "empty library: index a folder" : "";
  }
}

// --- searching ---------------------------------------------------------------------------------

function k() {
  return $("k").value;
}

let lastFile = null; // the uploaded query, searched again when the result count changes

async function searchFile(file) {
  if (!file) return;
  lastFile = file;
  showQuery(URL.createObjectURL(file), file.name || "pasted image");
  say("Searching…");
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  form.append("k", k());
  try {
    showResults(await api("/api/search", { method: "POST", body: form }));
  } catch (err) {
    clearResults();
    say(err.message, true);
  }
}

async function searchSimilar(id) {
  say("Searching…");
  try {
    const meta = await api(`/api/images/${id}`);
    showQuery(thumbUrl(id), meta.path);
    showResults(await api(`/api/images/${id}/similar?k=${k()}`));
  } catch (err) {
    clearResults();
    say(err.message, true);
  }
}

function thumbUrl(id) {
  return `/api/images/${id}/thumbnail?size=${THUMB_PX}`;
}

function showQuery(src, label) {
  const old = $("query-img").src;
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  $("query-img").src = src;
  $("query-img").alt = `query: ${label}`;
  $("query-label").textContent = label;
  $("query").hidden = false;
}

function clearResults() {
  $("results").replaceChildren();
}

function showResults(result) {
  const items = result.results.map(resultItem);
  $("results").replaceChildren(...items);
  const n = result.results.length;
  say(n ? `${n} results` : "No results: the library is empty.");
}

function resultItem(hit) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.className = "hit";
  button.dataset.id = hit.id;
  const name = hit.path.split(/[\\/]/).pop();
  button.title = `${hit.path}\nscore ${hit.score.toFixed(3)}: search from this image`;
  const img = document.createElement("img");
  img.src = thumbUrl(hit.id);
  img.alt = name;
  img.loading = "lazy";
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.append(element("span", hit.score.toFixed(3), "score"), element("span", name, "name"));
  button.append(img, meta);
  button.addEventListener("click", () => go(`#similar/${hit.id}`));
  const open = document.createElement("a");
  open.className = "open";
  open.href = `/api/images/${hit.id}/file`;
  open.target = "_blank";
  open.rel = "noopener";
  open.textContent = "open original";
  open.tabIndex = -1; // keyboard users press O on the result instead
  li.append(button, open);
  return li;
}

function element(tag, text, cls = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

// Arrow keys move focus through the grid (row length measured from the layout); O opens.
function onGridKey(event) {
  const buttons = [...event.currentTarget.querySelectorAll(".hit")];
  const at = buttons.indexOf(document.activeElement);
  if (at < 0) return;
  if (event.key.toLowerCase() === "o") {
    window.open(`/api/images/${buttons[at].dataset.id}/file`, "_blank", "noopener");
    return;
  }
  const top = buttons[0].getBoundingClientRect().top;
  const perRow = buttons.filter((b) => b.getBoundingClientRect().top === top).length || 1;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow }[event.key];
  if (step === undefined) return;
  event.preventDefault();
  const next = buttons[Math.min(Math.max(at + step, 0), buttons.length - 1)];
  next.focus();
}

function wireSearch() {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file").click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("file").click();
    }
  });
  $("file").addEventListener("change", () => {
    go("#");
    searchFile($("file").files[0]);
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    go("#");
    searchFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
    if (!item) return;
    go("#");
    searchFile(item.getAsFile());
  });
  $("results").addEventListener("keydown", onGridKey);
  $("k").addEventListener("change", () => (location.hash ? route() : searchFile(lastFile)));
}

// --- indexing ----------------------------------------------------------------------------------

async function loadRoots() {
  const { roots } = await api("/api/roots");
  const options = roots.map((r) => Object.assign(document.createElement("option"), { value: r }));
  $("roots").replaceChildren(...options);
  $("roots-note").textContent = roots.length
    ? `Folders under: ${roots.join(", ")}`
    : "Indexing from the page is off: start the server with --root DIR.";
  $("start").disabled = !roots.length;
  if (roots.length && !$("folder").value) $("folder").value = roots[0];
}

async function startIndex(event) {
  event.preventDefault();
  $("start").disabled = true;
  const body = JSON.stringify({ path: $("folder").value, retry_failed: $("retry").checked });
  try {
    const job = await api("/api/index", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    $("job").hidden = false;
    pollJob(job.job);
  } catch (err) {
    $("job").hidden = false;
    say(err.message, true, $("job-text"));
    $("start").disabled = false;
  }
}

async function pollJob(id) {
  let job;
  try {
    job = await api(`/api/jobs/${id}`);
  } catch (err) {
    say(err.message, true, $("job-text"));
    $("start").disabled = false;
    return;
  }
  showJob(job);
  if (job.state === "running") {
    setTimeout(() => pollJob(id), POLL_MS);
  } else {
    $("start").disabled = false;
    refreshStats();
  }
}

function showJob(job) {
  const bar = $("job-bar");
  bar.max = Math.max(job.total, 1);
  bar.value = job.done;
  if (job.state === "running") {
    const stage = job.stage === "embed" ? "embedding" : job.stage === "hash" ? "hashing" : "walking";
    const eta = job.eta_seconds == null ? "" : ` · ETA ${Math.ceil(job.eta_seconds)} s`;
    say(`${stage} ${job.done}/${job.total} · ${job.rate.toFixed(1)}/s${eta}`, false, $("job-text"));
  } else if (job.state === "done") {
    const s = job.summary;
    say(
      `Done in ${s.seconds.toFixed(1)} s: ${s.indexed} indexed, ${s.unchanged} unchanged, ` +
        `${s.moved} moved, ${s.removed} removed, ${s.failed.length} failed.`,
      false,
      $("job-text"),
    );
  } else {
    say(`Failed: ${job.error.message}`, true, $("job-text"));
  }
  const items = job.failures.map((f) => element("li", `${f.path}: ${f.error}`));
  $("job-failures").replaceChildren(...items);
}

// --- duplicates --------------------------------------------------------------------------------

async function findDuplicates(event) {
  event.preventDefault();
  $("find").disabled = true;
  say("Looking for duplicates… (the first run calibrates the threshold)", false, $("dups-status"));
  const params = new URLSearchParams({
    threshold: $("threshold").value.trim() || "auto",
    include_similar: $("similar").checked,
  });
  try {
    const report = await api(`/api/duplicates?${params}`);
    $("groups").replaceChildren(...report.groups.map(groupSection));
    const st = report.stats;
    say(
      `${st.groups} groups, ${st.duplicates} duplicates among ${st.images} images ` +
        `(threshold ${report.threshold.toFixed(3)}, ${st.mode}) in ${st.seconds.toFixed(1)} s`,
      false,
      $("dups-status"),
    );
  } catch (err) {
    say(err.message, true, $("dups-status"));
  } finally {
    $("find").disabled = false;
  }
}

function groupSection(group, number) {
  const section = element("section", "", "group");
  const title = element("h3", ` group ${number + 1}: ${group.members.length} images`);
  title.prepend(element("span", group.tier, "tier"));
  const list = element("ol", "", "grid");
  list.append(...group.members.map((m, i) => memberItem(m, i === 0)));
  list.addEventListener("keydown", onGridKey);
  section.append(title, list);
  return section;
}

function memberItem(member, first) {
  const li = resultItem({ id: member.id, path: member.path, score: member.score });
  const size = member.width ? `${member.width}×${member.height}` : "";
  const conf = member.confidence == null ? "" : ` · conf ${member.confidence.toFixed(2)}`;
  const note = first ? "reference" : `${member.match}${conf}`;
  li.querySelector(".hit").append(element("span", `${size} · ${note}`, "reference"));
  return li;
}

// --- views -------------------------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash || (hash === "#" && !location.hash)) return;
  history.pushState(null, "", hash === "#" ? location.pathname : hash);
  route();
}

function showView(name) {
  for (const view of ["search", "dups", "index"]) {
    $(`view-${view}`).hidden = view !== name;
    if (view === name) $(`tab-${view}`).setAttribute("aria-current", "page");
    else $(`tab-${view}`).removeAttribute("aria-current");
  }
}

function route() {
  const hash = location.hash;
  if (hash === "#index") {
    showView("index");
    loadRoots().catch((err) => say(err.message, true, $("roots-note")));
    return;
  }
  if (hash === "#dups") return showView("dups");
  showView("search");
  const match = hash.match(/^#similar\/(\d+)$/);
  if (match) searchSimilar(match[1]);
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  wireSearch();
  $("index-form").addEventListener("submit", startIndex);
  $("dups-form").addEventListener("submit", findDuplicates);
  refreshStats();
  route();
});

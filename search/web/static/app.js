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
    await showResults(await api("/api/search", { method: "POST", body: form }));
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
    await showResults(await api(`/api/images/${id}/similar?k=${k()}`));
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

async function showResults(result) {
  await loadLibrary().catch(() => null); // cards name their folder inside the library's top
  const items = result.results.map((hit) => resultItem(hit));
  $("results").replaceChildren(...items);
  const n = result.results.length;
  say(n ? `${n} results` : "No results: the library is empty.");
}

// A card: thumbnail, score (or capture date), name and folder: two kodim05.png in different
// folders must not look alike. `root`: the folder labels are relative to (default: the library's).
function resultItem(hit, root = library.top) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.className = "hit";
  button.dataset.id = hit.id;
  const name = baseName(hit.path);
  const score = hit.score == null ? "" : hit.score.toFixed(3);
  const fact = score ? `score ${score}` : hit.taken ? `taken ${hit.taken}` : "no capture time";
  button.title = `${hit.path}\n${fact}: search from this image`;
  const img = document.createElement("img");
  img.src = thumbUrl(hit.id);
  img.alt = name;
  img.loading = "lazy";
  img.decoding = "async";
  const meta = document.createElement("span");
  meta.className = "meta";
  if (score) meta.append(element("span", score, "score"), element("span", name, "name"));
  else meta.append(element("span", name, "name"), element("span", day(hit.taken), "date"));
  button.append(img, meta, element("span", folderOf(hit.path, root), "folder"));
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
    forgetLibrary();
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

// --- duplicates: a plan to review, keeper choice, decisions, apply with confirmation ----------

let plan = null; // the plan shown (POST /api/plan), with image_ids: path -> id

const VERB = { trash: "trash", move: "move", hardlink: "hard-link", symlink: "symlink" };
VERB.delete = "delete";
const TURNED = { rot90: "turned 90°", rot180: "turned 180°", rot270: "turned 270°", mirror: "mirrored" };

function planOptions() {
  const options = {
    threshold: $("threshold").value.trim() || "auto",
    include_similar: $("similar").checked,
    rotations: $("rotations").checked,
    action: $("action").value,
  };
  const keep = $("keep-policy").value.trim();
  if (keep) options.keep = keep;
  const burst = $("burst-window").value.trim();
  if (burst) options.burst_window = burst;
  const reference = referenceFolders();
  if (reference.length) options.reference = reference;
  if (options.action === "move") options.move_to = $("move-to").value.trim();
  return options;
}

function postJson(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function findDuplicates(event) {
  if (event) event.preventDefault();
  $("find").disabled = true;
  $("confirm").hidden = true;
  say("", false, $("apply-status"));
  say("Looking for duplicates… (the first run calibrates the threshold)", false, $("dups-status"));
  const started = performance.now();
  try {
    showPlan(await postJson("/api/plan", planOptions()));
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const dups = plan.groups.reduce((n, g) => n + g.files.length - 1, 0);
    const threshold = plan.threshold == null ? "" : ` (threshold ${plan.threshold.toFixed(3)})`;
    say(`${plan.groups.length} groups, ${dups} duplicates${threshold} in ${seconds} s`, false,
      $("dups-status"));
  } catch (err) {
    say(err.message, true, $("dups-status"));
  } finally {
    $("find").disabled = false;
  }
}

function showPlan(newPlan) {
  plan = newPlan;
  plan.folder = commonFolder(plan.groups.flatMap((g) => g.files.map((f) => f.path)));
  $("groups").replaceChildren(...plan.groups.map(planGroup));
  const acts = Object.entries(plan.summary.actions)
    .filter(([action, n]) => n && action !== "keep")
    .map(([action, n]) => `${n} to ${VERB[action] || action}`);
  const freed = (plan.summary.bytes_freed / 1e6).toFixed(1);
  $("plan-summary").textContent = acts.length
    ? `Plan: ${acts.join(", ")}; ${freed} MB freed. Kept files are not touched.`
    : "Plan: nothing to do (every file is kept).";
  $("plan-bar").hidden = plan.groups.length === 0;
  showFolderTable();
  $("review").disabled = !acts.length;
  $("confirm").hidden = true;
}

function planGroup(group) {
  const section = element("section", "", "group");
  section.dataset.group = group.group;
  const title = element("h3", ` group ${group.group}: ${group.files.length} images`);
  title.prepend(element("span", group.tier, "tier"));
  const reason = element("p", "", "reason");
  reason.append(
    "Keeps ",
    element("strong", baseName(group.keep), "kept-name"),
    ": ",
    element("span", group.reason.text || "", "why"),
  );
  const list = element("ol", "", "grid");
  list.append(...group.files.map((f) => planFileItem(group, f)));
  list.addEventListener("keydown", onGridKey);
  section.append(title, reason, list);
  return section;
}

function baseName(path) {
  return path.split(/[\\/]/).pop();
}

// The folder every file of the plan lies under, so each card can say where its file is:
// byte copies in DCIM/ and Backup/2015/ have the same name.
function commonFolder(paths) {
  if (!paths.length) return "";
  let parts = paths[0].split("/").slice(0, -1);
  for (const path of paths.slice(1)) {
    const other = path.split("/");
    let n = 0;
    while (n < parts.length && n < other.length - 1 && parts[n] === other[n]) n += 1;
    parts = parts.slice(0, n);
  }
  return parts.join("/");
}

function folderOf(path, root) {
  const folder = path.split("/").slice(0, -1).join("/");
  const prefix = `${(root || "").replace(/\/+$/, "")}/`;
  const inside = !root ? folder : folder === root ? "" : folder.startsWith(prefix)
    ? folder.slice(prefix.length) : folder;
  return `${inside || "."}/`;
}

function isUnder(path, folders) {
  return folders.some((f) => path === f || path.startsWith(f.replace(/\/+$/, "") + "/"));
}

function day(taken) {
  return taken ? taken.slice(0, 10) : "no date";
}

function planFileItem(group, file) {
  const id = plan.image_ids[file.path];
  const kept = file.path === group.keep;
  const li = resultItem({ id, path: file.path, score: file.score ?? 1 }, plan.folder);
  li.classList.toggle("kept", kept);
  const hit = li.querySelector(".hit");
  if (isUnder(file.path, plan.reference || [])) {
    li.classList.add("protected");
    hit.append(element("span", "reference folder: protected", "protected-badge"));
  }
  const size = file.width ? `${file.width}×${file.height} · ` : "";
  const kb = file.size == null ? "" : `${Math.round(file.size / 1024)} KB · `;
  const conf = file.confidence == null ? "" : ` · conf ${file.confidence.toFixed(2)}`;
  const pixels = file.verified ? ` · ${file.verified} confirmed by pixels` : "";
  const turn = file.transform ? ` · ${TURNED[file.transform] || file.transform}` : "";
  hit.append(element("span", `${size}${kb}${file.match}${turn}${pixels}${conf}`, "reference"));
  const label = kept ? "kept" : file.action === "keep" ? "stays" : VERB[file.action] || file.action;
  hit.append(element("span", label, `action ${file.action === "keep" ? "keep" : "remove"}`));
  if (file.note) hit.append(element("span", file.note, "note"));
  const pct = file.deltas ? file.deltas.pixels_pct : null;
  if (pct) hit.append(element("span", `${pct > 0 ? "+" : ""}${pct}% pixels`, "note"));
  if (!kept && id !== undefined) {
    const keptId = plan.image_ids[group.keep];
    const choices = element("div", "", "choices");
    choices.append(
      choiceButton("Keep this", "keep-this", () => chooseKeeper(group.group, id)),
      choiceButton("Not a duplicate", "distinct", () => decide("distinct", [keptId, id])),
      choiceButton("Keep both", "keep-both", () => decide("keep-both", [keptId, id])),
    );
    li.append(choices);
  }
  return li;
}

function choiceButton(text, cls, onClick) {
  const button = element("button", text, cls);
  button.type = "button";
  button.tabIndex = -1; // the grid's arrow keys move between images; these are for the mouse
  button.addEventListener("click", onClick);
  return button;
}

async function chooseKeeper(group, id) {
  try {
    showPlan(await postJson(`/api/plan/${plan.id}/keep`, { group, id }));
    say(`Group ${group}: keeper changed.`, false, $("apply-status"));
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

async function decide(action, ids) {
  try {
    await postJson("/api/duplicates/decisions", { action, ids });
    await findDuplicates();
    const what = action === "distinct" ? "not duplicates" : "duplicates to keep both";
    say(`Recorded as ${what}; the plan was made again.`, false, $("apply-status"));
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

// Step 1: a dry run (nothing changes) shown for confirmation; step 2: apply for real.
async function reviewPlan() {
  try {
    const dry = await postJson("/api/apply", { plan_id: plan.id });
    const would = dry.files.filter((f) => f.state === "would");
    const skipped = dry.files.filter((f) => f.state !== "would");
    const acts = Object.entries(dry.summary.actions)
      .filter(([action, n]) => n && action !== "keep")
      .map(([action, n]) => `${VERB[action] || action} ${n}`);
    const undoable = plan.summary.actions.delete ? " Deleted files cannot be restored." : "";
    $("confirm-text").textContent =
      `Apply this plan? It will ${acts.join(", ")} file(s) ` +
      `(${would.length} ready, ${skipped.length} skipped).${undoable}`;
    const items = dry.files.map((f) => {
      const to = f.target && f.action === "move" ? ` → ${f.target}` : "";
      const detail = f.state === "would" ? "" : ` (skipped: ${f.detail})`;
      return element("li", `${VERB[f.action] || f.action} ${f.path}${to}${detail}`);
    });
    $("confirm-files").replaceChildren(...items);
    $("confirm").hidden = false;
    $("confirm-apply").disabled = !would.length;
    $("confirm-apply").focus();
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

async function confirmApply() {
  $("confirm").hidden = true;
  say("Applying…", false, $("apply-status"));
  try {
    const started = await postJson("/api/apply", { plan_id: plan.id, confirm: true });
    const run = await pollRun(started.run);
    const counts = Object.entries(run.result.counts).map(([s, n]) => `${n} ${s}`);
    say(`Applied: ${counts.join(", ") || "nothing to do"}.`, !!run.result.counts.failed,
      $("apply-status"));
    $("undo").hidden = false;
    $("review").disabled = true;
    refreshStats();
    forgetLibrary();
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

async function undoPlan() {
  say("Undoing…", false, $("apply-status"));
  try {
    const started = await postJson("/api/undo", { plan_id: plan.id, confirm: true });
    const run = await pollRun(started.run);
    const counts = Object.entries(run.result.counts).map(([s, n]) => `${n} ${s}`);
    say(`Undone: ${counts.join(", ") || "nothing to undo"}.`, false, $("apply-status"));
    $("undo").hidden = true;
    refreshStats();
    forgetLibrary();
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

async function pollRun(id) {
  for (;;) {
    const run = await api(`/api/apply/${id}`);
    if (run.state === "done") return run;
    if (run.state === "failed") throw new Error(run.error.message);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS / 5));
  }
}

function wireDuplicates() {
  $("dups-form").addEventListener("submit", findDuplicates);
  $("action").addEventListener("change", () => ($("move-to").hidden = $("action").value !== "move"));
  $("review").addEventListener("click", reviewPlan);
  $("confirm-apply").addEventListener("click", confirmApply);
  $("cancel-apply").addEventListener("click", () => {
    $("confirm").hidden = true;
    say("Nothing was changed.", false, $("apply-status"));
  });
  $("undo").addEventListener("click", undoPlan);
}

// --- views -------------------------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash || (hash === "#" && !location.hash)) return;
  history.pushState(null, "", hash === "#" ? location.pathname : hash);
  route();
}

// A view's options live in its hash (#browse?folder=...&sort=taken): read them, and the hash of
// the view with some changed (null or "" drops one).
function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

function hashWith(view, changes) {
  const params = hashParams();
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === "") params.delete(name);
    else params.set(name, value);
  }
  const query = params.toString();
  return query ? `#${view}?${query}` : `#${view}`;
}

function showView(name) {
  for (const view of ["search", "browse", "dups", "curate", "index"]) {
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
  if (hash === "#curate" || hash.startsWith("#curate?")) {
    showView("curate");
    openCurate().catch((err) => say(err.message, true, $("outliers-status")));
    return;
  }
  if (hash === "#browse" || hash.startsWith("#browse?")) {
    showView("browse");
    openBrowse().catch((err) => say(err.message, true, $("browse-status")));
    return;
  }
  showView("search");
  const match = hash.match(/^#similar\/(\d+)$/);
  if (match) searchSimilar(match[1]);
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  wireSearch();
  $("index-form").addEventListener("submit", startIndex);
  wireDuplicates();
  wireBrowse();
  refreshStats();
  route();
});

// dinosearch web page, part three: the Curate view. Outliers (GET /api/outliers), quality flags
// (GET /api/flags) and clusters (GET /api/clusters), each behind a sub-tab, their options in the
// hash (#curate?show=flags&flag=dark). Loaded after app.js and browse.js, whose helpers (api,
// element, say, go, resultItem, loadLibrary, library, ...) it uses.
"use strict";

const CURATE_PARTS = ["outliers", "flags", "clusters"];
const CARDS_PAGE = 120; // cards added a time: outliers and flagged images
const CLUSTERS_PAGE = 30; // cluster sections added a time
const MEMBERS_SHOWN = 12; // thumbnails a cluster shows before "show all"
const FLAG_VALUE = {
  // the measure each flag reads (the API's stats.thresholds says so too: "brightness < 0.15")
  dark: "brightness", overexposed: "brightness", blurry: "sharpness",
  "low-information": "information", grayscale: "colourfulness",
  "odd-aspect-ratio": "aspect_ratio", tiny: "shorter_side",
};

// Per part: the options fetched (key), the answer, and the options it was last drawn with.
const curating = Object.fromEntries(CURATE_PARTS.map((p) => [p, { key: null, data: null }]));

function curateTo(changes) {
  go(hashWith("curate", changes));
}

function curateOptions() {
  const params = hashParams();
  const show = params.get("show");
  return {
    show: CURATE_PARTS.includes(show) ? show : "outliers",
    within: params.get("within") || "",
    n: params.get("n") || "50",
    flag: params.get("flag") || "",
    threshold: params.get("threshold") || "auto",
    min_size: params.get("min_size") || "2",
  };
}

async function openCurate() {
  const options = curateOptions();
  for (const part of CURATE_PARTS) {
    $(`curate-${part}`).hidden = part !== options.show;
    const tab = $(`curate-tab-${part}`);
    tab.href = hashWith("curate", { show: part === "outliers" ? null : part });
    if (part === options.show) tab.setAttribute("aria-current", "true");
    else tab.removeAttribute("aria-current");
  }
  $("curate-within").value = options.within;
  $("outliers-n").value = options.n;
  $("clusters-threshold").value = options.threshold;
  $("clusters-min-size").value = options.min_size;
  loadLibrary().then(showFolderChoices).catch(() => null); // card labels, the folder list
  await { outliers: openOutliers, flags: openFlags, clusters: openClusters }[options.show](options);
}

function showFolderChoices() {
  const folders = (library.folders || []).map((f) => f.path);
  const options = folders.map((f) => Object.assign(document.createElement("option"), { value: f }));
  $("curate-folders").replaceChildren(...options);
}

// Fetches a part's answer unless it is the one already held for these options (back from
// "similar", or from another part); true when there is an answer to draw from state.data.
async function fetchPart(part, key, url, busyText, force) {
  const state = curating[part];
  if (!force && key === state.key && state.data) return true;
  state.key = key;
  state.data = null;
  state.drawn = null;
  const view = $(`curate-${part}`);
  for (const list of view.querySelectorAll(".paged")) list.replaceChildren();
  for (const el of view.querySelectorAll(".more, .alone")) el.hidden = true;
  const status = $(`${part}-status`);
  say(busyText, false, status);
  const started = performance.now();
  try {
    await loadLibrary().catch(() => null);
    const data = await api(url);
    if (key !== state.key) return false; // the options changed while this was on its way
    state.data = data;
    state.seconds = (performance.now() - started) / 1000;
    return true;
  } catch (err) {
    if (key !== state.key) return false;
    state.key = null; // the next visit asks again
    say(curateError(err), err.code !== "no_library", status);
    return false;
  }
}

// Draws a part unless it shows these options already (its scroll position stays as it was).
function needsDrawing(part, drawKey) {
  const state = curating[part];
  if (state.drawn === drawKey) return false;
  state.drawn = drawKey;
  return true;
}

function curateError(err) {
  if (err.code === "no_library") return "The library is empty: index a folder first.";
  return err.message;
}

function withinQuery(options, query = new URLSearchParams()) {
  if (options.within) query.set("within", options.within);
  return query;
}

// --- outliers: the most unusual images first ---------------------------------------------------

async function openOutliers(options, force = false) {
  const query = withinQuery(options, new URLSearchParams({ n: options.n }));
  const key = query.toString();
  const busy = "Looking for the most unusual images…";
  if (!(await fetchPart("outliers", key, `/api/outliers?${query}`, busy, force))) return;
  if (!needsDrawing("outliers", key)) return;
  const data = curating.outliers.data;
  const s = data.stats;
  const method = s.k ? ` · score: 1 − cosine to the ${ordinal(s.k)} nearest image` : "";
  const median = s.median_score == null ? "" : ` (median ${s.median_score.toFixed(3)})`;
  say(data.outliers.length
    ? `${data.outliers.length} most unusual of ${count(s.images)} images${where(options)}` +
      `${method}${median} · ${curating.outliers.seconds.toFixed(1)} s`
    : "No images to rank here.", false, $("outliers-status"));
  showCards("outliers", data.outliers, outlierItem);
}

function where(options) {
  return options.within ? ` under ${folderOf(`${options.within}/x`, parentOf(library.top))}` : "";
}

function outlierItem(hit) {
  const li = resultItem(hit);
  li.classList.add("outlier");
  const button = li.querySelector(".hit");
  button.prepend(element("span", `#${hit.rank}`, "rank"));
  if (hit.copies) {  // its copies share its rank: one entry per picture
    const copies = element("span", `+${hit.copies} ${hit.copies === 1 ? "copy" : "copies"}`,
      "copies");
    copies.title = (hit.copy_paths || []).join("\n");
    button.append(copies);
  }
  if (hit.nearest) {
    const near = element("span", "", "nearest");
    near.append("nearest: ", element("span", baseName(hit.nearest), "near-name"),
      ` · ${folderOf(hit.nearest, library.top)}`);
    near.title = hit.nearest;
    button.append(near);
  }
  return li;
}

function ordinal(n) {
  const tail = n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10];
  return `${n}${tail || "th"}`;
}

function count(n) {
  return Number(n || 0).toLocaleString();
}

// Items into a list `size` at a time; the "more" block under it adds the next ones.
function showPaged(list, more, items, makeItem, size, noun = "") {
  list.replaceChildren();
  const button = more.querySelector("button");
  const add = () => {
    const from = list.children.length;
    list.append(...items.slice(from, from + size).map(makeItem));
    const left = items.length - list.children.length;
    more.hidden = left <= 0;
    button.textContent = `Show ${count(Math.min(left, size))} more${noun} (${count(left)} left)`;
  };
  button.onclick = add;
  add();
}

function showCards(part, items, makeItem) {
  showPaged($(`${part}-grid`), $(`${part}-more`), items, makeItem, CARDS_PAGE);
}

// A card without a score: name and folder (flagged images, images in no cluster).
function plainItem(image) {
  const li = resultItem({ id: image.id, path: image.path, score: null, taken: "" });
  const date = li.querySelector(".date");
  if (date) date.remove();
  li.querySelector(".hit").title = `${image.path}\nsearch from this image`;
  return li;
}

// --- quality flags: chips per flag with counts, the flagged images as cards --------------------

async function openFlags(options, force = false) {
  const key = withinQuery(options).toString();
  if (!(await fetchPart("flags", key, `/api/flags?${key}`, "Reading the quality flags…", force))) {
    return;
  }
  if (!needsDrawing("flags", `${key}&flag=${options.flag}`)) return;
  const data = curating.flags.data;
  showFlagChips(data, options.flag);
  const picked = options.flag ? data.flags.filter((f) => f.flags.includes(options.flag)) : data.flags;
  showCards("flags", picked, (f) => flaggedItem(f, data.stats.thresholds || {}));
  say(flagsSummary(data.stats, picked.length, options), false, $("flags-status"));
}

function flagsSummary(s, n, options) {
  if (!s.images) return "No images here.";
  const what = options.flag ? `${count(n)} ${options.flag}` : `${count(s.flagged)} flagged`;
  const unmeasured = s.measured < s.images
    ? ` · ${count(s.images - s.measured)} not measured yet (the next index measures them)` : "";
  return `${what} of ${count(s.images)} images${where(options)}${unmeasured}`;
}

function showFlagChips(data, selected) {
  const chips = [flagChip("all flagged", data.stats.flagged, "", selected, "every flagged image")];
  for (const [name, n] of Object.entries(data.stats.counts || {})) {
    chips.push(flagChip(name, n, name, selected, (data.stats.thresholds || {})[name] || ""));
  }
  $("flag-chips").replaceChildren(...chips);
}

function flagChip(label, n, flag, selected, rule) {
  const chip = element("button", "", "chip");
  chip.type = "button";
  chip.dataset.flag = flag;
  chip.setAttribute("aria-pressed", String(flag === selected));
  chip.disabled = !n && flag !== selected;
  chip.title = rule;
  chip.append(element("span", label, "label"), element("span", count(n), "count"));
  chip.addEventListener("click", () => curateTo({ flag: flag === selected ? null : flag }));
  return chip;
}

function flaggedItem(image, thresholds) {
  const li = plainItem(image);
  const button = li.querySelector(".hit");
  const list = element("span", "", "flags");
  for (const flag of image.flags) {
    const key = (thresholds[flag] || "").split(" ")[0] || FLAG_VALUE[flag];
    const value = image.values ? image.values[key] : undefined;
    const badge = element("span", flag, "flag");
    const unit = key === "shorter_side" ? " px" : "";
    if (value != null) badge.append(" ", element("span", `${shortNumber(value)}${unit}`, "value"));
    badge.title = `${key} ${value == null ? "not measured" : value}; flagged when ${thresholds[flag] || "?"}`;
    list.append(badge);
  }
  button.append(list);
  button.title = `${image.path}\n${image.flags.join(", ")}: search from this image`;
  return li;
}

// 0.0287 -> "0.029", 0.9995 -> "0.9995", 297.8 -> "297.8", 3 -> "3"
function shortNumber(value) {
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  const digits = Math.abs(value) > 0.99 ? 4 : 3;
  return value.toFixed(digits).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

// --- clusters: each a row (representative first), the first ones, then "show more" ----------

async function openClusters(options, force = false) {
  const query = withinQuery(options, new URLSearchParams({
    threshold: options.threshold, min_size: options.min_size,
  }));
  const key = query.toString();
  const busy = "Clustering… (the first run calibrates the threshold)";
  if (!(await fetchPart("clusters", key, `/api/clusters?${query}`, busy, force))) return;
  if (!needsDrawing("clusters", key)) return;
  const data = curating.clusters.data;
  say(clustersSummary(data.stats, options), false, $("clusters-status"));
  showClusters(data.clusters);
}

function clustersSummary(s, options) {
  if (!s.images) return "No images here.";
  const threshold = s.threshold == null ? "" : ` at threshold ${shortNumber(s.threshold)}` +
    (s.mode === "auto" ? " (auto)" : "");
  const alone = s.singletons ? ` · ${count(s.singletons)} images alone` : "";
  const largest = s.largest ? ` · largest ${count(s.largest)}` : "";
  const size = options.min_size === "1" ? "" : ` of ${options.min_size} or more`;
  const seconds = curating.clusters.seconds.toFixed(1);
  return `${count(s.clusters)} clusters${size} (${count(s.in_listed_clusters)} of ` +
    `${count(s.images)} images)${threshold}${alone}${largest} · ${seconds} s`;
}

// Clusters of two or more as sections, CLUSTERS_PAGE at a time; images alone in one grid after.
function showClusters(clusters) {
  const groups = clusters.filter((c) => c.size > 1);
  const alone = clusters.filter((c) => c.size === 1).map((c) => c.members[0]);
  showPaged($("clusters-list"), $("clusters-more"), groups, clusterSection, CLUSTERS_PAGE,
    " clusters");
  if (!clusters.length) {
    $("clusters-list").append(element("p", "No clusters at this threshold and size: try a " +
      "lower threshold or a min size of 1.", "hint"));
  }
  $("clusters-alone").hidden = !alone.length;
  $("clusters-alone-title").textContent =
    `${count(alone.length)} ${alone.length === 1 ? "image" : "images"} in no cluster`;
  showPaged($("clusters-alone-grid"), $("clusters-alone-more"), alone, plainItem, CARDS_PAGE);
}

function clusterSection(cluster) {
  const section = element("section", "", "cluster");
  section.dataset.cluster = cluster.id;
  const title = element("h3", "");
  title.append(element("span", `cluster ${cluster.id}`, "tier"),
    ` · ${cluster.size} ${cluster.size === 1 ? "image" : "images"}`);
  title.title = `representative: ${cluster.representative.path}`;
  const grid = element("ol", "", "grid");
  grid.addEventListener("keydown", onGridKey);
  const members = cluster.members;
  const showMembers = (n) => grid.replaceChildren(...members.slice(0, n).map((m) => memberItem(
    m, cluster)));
  showMembers(MEMBERS_SHOWN);
  section.append(title, grid);
  if (members.length > MEMBERS_SHOWN) {
    const all = element("button", `Show all ${members.length}`, "show-all");
    all.type = "button";
    all.addEventListener("click", () => {
      showMembers(members.length);
      all.remove();
    });
    section.append(all);
  }
  return section;
}

function memberItem(member, cluster) {
  const li = resultItem({ id: member.id, path: member.path, score: member.score });
  if (member.id === cluster.representative.id) {
    li.classList.add("representative");
    li.querySelector(".hit").append(element("span", "representative", "rep-badge"));
  }
  return li;
}

// --- wiring --------------------------------------------------------------------------------------

function wireCurate() {
  $("curate-within").addEventListener("change", () =>
    curateTo({ within: $("curate-within").value.trim() || null }));
  $("outliers-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const n = $("outliers-n").value.trim() || "50";
    if (n === curateOptions().n) openOutliers(curateOptions(), true); // the same: ask again
    else curateTo({ n: n === "50" ? null : n });
  });
  $("clusters-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const threshold = $("clusters-threshold").value.trim() || "auto";
    const minSize = $("clusters-min-size").value.trim() || "2";
    const now = curateOptions();
    if (threshold === now.threshold && minSize === now.min_size) openClusters(now, true);
    else curateTo({ threshold: threshold === "auto" ? null : threshold,
      min_size: minSize === "2" ? null : minSize });
  });
  $("flags-refresh").addEventListener("click", () => openFlags(curateOptions(), true));
  $("outliers-grid").addEventListener("keydown", onGridKey);
  $("flags-grid").addEventListener("keydown", onGridKey);
  $("clusters-alone-grid").addEventListener("keydown", onGridKey);
}

document.addEventListener("DOMContentLoaded", wireCurate);

// dinosearch web page, part two: the Browse view (folder tree, capture-date timeline, a grid
// loaded page by page) and, in the duplicate review, select by folder and reference folders.
// Loaded after app.js, whose helpers (api, element, say, go, resultItem, ...) it uses.
"use strict";

// --- the library: folders (the Browse tree; card labels are relative to its top) ---------------

const library = { top: "", folders: null, loading: null }; // GET /api/folders, once

function loadLibrary() {
  if (library.folders) return Promise.resolve(library);
  library.loading ||= api("/api/folders")
    .then((found) => Object.assign(library, found))
    .finally(() => (library.loading = null));
  return library.loading;
}

function forgetLibrary() {
  library.folders = null;
  browsing.key = null; // the next visit to Browse loads its pages again
}

// --- browsing: a folder tree, a capture-date timeline, a grid loaded page by page -------------

const BROWSE_PAGE = 120; // images a request; the next page loads as the grid's end nears
const browsing = { key: null, cursor: null, loading: false, shown: 0, observer: null };

function browseTo(changes) {
  go(hashWith("browse", changes));
}

function browseFilter() {
  const params = hashParams();
  const month = params.get("month") || "";
  return {
    folder: params.get("folder") || "",
    month,
    sort: params.get("sort") || (month ? "taken" : "path"),
    recursive: params.get("sub") !== "0",
  };
}

async function openBrowse() {
  const filter = browseFilter();
  $("browse-sort").value = filter.sort;
  $("browse-sub").checked = filter.recursive;
  const key = JSON.stringify(filter);
  if (key === browsing.key) return; // back from "similar": the grid is as it was left
  browsing.key = key;
  browsing.cursor = null;
  browsing.shown = 0;
  $("browse-grid").replaceChildren();
  $("browse-more").hidden = true;
  say("Loading…", false, $("browse-status"));
  try {
    await loadLibrary();
  } catch (err) {
    const empty = err.code === "no_library";
    say(empty ? "The library is empty: index a folder first." : err.message, !empty,
      $("browse-status"));
    return;
  }
  $("browse-top").textContent = library.top ? `in ${library.top}` : "";
  showFolderTree(filter.folder);
  showBrowseTitle(filter);
  loadTimeline(filter);
  await loadPage(key);
}

function showBrowseTitle(filter) {
  const where = filter.folder ? folderOf(`${filter.folder}/x`, parentOf(library.top)) : "All images";
  const when = filter.month ? ` · ${monthName(filter.month)}` : "";
  $("browse-title").textContent = `${where}${when}`;
  $("browse-title").title = filter.folder || library.top;
}

function parentOf(folder) {
  return folder.split("/").slice(0, -1).join("/");
}

function monthName(month) {
  if (month === "none") return "no capture time";
  if (month.length === 4) return month;
  const [y, m] = month.split("-").map(Number);
  return new Date(y, m - 1, 1).toLocaleDateString(undefined, { month: "long", year: "numeric" });
}

async function loadPage(key) {
  if (browsing.loading || key !== browsing.key) return;
  browsing.loading = true;
  const filter = browseFilter();
  const query = new URLSearchParams({ sort: filter.sort, limit: BROWSE_PAGE });
  if (filter.folder) query.set("folder", filter.folder);
  if (filter.month) query.set("month", filter.month);
  if (!filter.recursive) query.set("recursive", "false");
  if (browsing.cursor) query.set("cursor", browsing.cursor);
  try {
    const page = await api(`/api/browse?${query}`);
    if (key !== browsing.key) return; // the filter changed while this page was on its way
    $("browse-grid").append(...page.images.map((image) => resultItem(image)));
    browsing.shown += page.images.length;
    browsing.cursor = page.next_cursor;
    const n = page.total.toLocaleString();
    say(page.total ? `${browsing.shown.toLocaleString()} of ${n} images` : "No images here.",
      false, $("browse-status"));
    $("browse-more").hidden = !page.next_cursor;
  } catch (err) {
    say(err.message, true, $("browse-status"));
  } finally {
    browsing.loading = false;
    // the filter changed while this page was on its way: its own first page, asked meanwhile,
    // was refused as one too many, so it is asked now
    if (key !== browsing.key) loadPage(browsing.key);
  }
  watchGridEnd(); // again: a short page may leave the end of the grid in view
}

function watchGridEnd() {
  const end = $("browse-more");
  browsing.observer.unobserve(end);
  if (browsing.cursor) browsing.observer.observe(end); // observing reports the current state
}

function onGridEnd(entries) {
  if (entries.some((e) => e.isIntersecting) && browsing.cursor && !$("view-browse").hidden) {
    loadPage(browsing.key);
  }
}

// The folder tree: nested lists, the selected folder's ancestors open, counts include subfolders.
function showFolderTree(selected) {
  const all = treeButton("All images", library.folders.length ? library.folders[0].total : 0, "");
  all.classList.toggle("selected", !selected);
  const root = element("ul", "", "");
  const byDepth = [root];
  for (const folder of library.folders) {
    const item = element("li", "", "");
    item.append(treeButton(folder.name, folder.total, folder.path, folder.images));
    item.querySelector("button").classList.toggle("selected", folder.path === selected);
    item.dataset.path = folder.path;
    const parent = byDepth[folder.depth] || root;
    parent.append(item);
    const children = element("ul", "", "");
    children.hidden = folder.depth >= 1 && !isUnder(selected || "", [folder.path]);
    item.append(children);
    byDepth[folder.depth + 1] = children;
  }
  for (const list of root.querySelectorAll("ul")) {
    if (list.children.length) addToggle(list);
    else list.remove();
  }
  $("folder-tree").replaceChildren(all, root);
}

function treeButton(label, count, path, direct) {
  const button = element("button", "", "node");
  button.type = "button";
  button.dataset.folder = path;
  button.append(element("span", label, "label"), element("span", count.toLocaleString(), "count"));
  if (direct !== undefined) button.title = `${path}\n${direct} here, ${count} with subfolders`;
  button.addEventListener("click", () => browseTo({ folder: path, month: null }));
  return button;
}

function addToggle(list) {
  const toggle = element("button", list.hidden ? "▸" : "▾", "toggle");
  toggle.type = "button";
  toggle.setAttribute("aria-label", "show subfolders");
  toggle.setAttribute("aria-expanded", String(!list.hidden));
  toggle.addEventListener("click", () => {
    list.hidden = !list.hidden;
    toggle.textContent = list.hidden ? "▸" : "▾";
    toggle.setAttribute("aria-expanded", String(!list.hidden));
  });
  list.parentElement.prepend(toggle);
}

async function loadTimeline(filter) {
  const query = filter.folder ? `?folder=${encodeURIComponent(filter.folder)}` : "";
  try {
    showTimeline(await api(`/api/timeline${query}`), filter.month);
  } catch (err) {
    $("timeline").replaceChildren(element("p", err.message, "hint"));
  }
}

function showTimeline(timeline, selected) {
  const total = timeline.years.reduce((n, y) => n + y.images, timeline.undated);
  const items = [monthButton("All dates", total, "", selected)];
  for (const year of timeline.years) {
    const open = selected.startsWith(year.year);
    const item = element("div", "", "year");
    const months = element("div", "", "months");
    months.hidden = !open;
    months.append(...year.months.map((m) => monthButton(monthName(m.month), m.images, m.month,
      selected)));
    item.append(monthButton(year.year, year.images, year.year, selected), months);
    items.push(item);
  }
  if (timeline.undated) items.push(monthButton("No date", timeline.undated, "none", selected));
  $("timeline").replaceChildren(...items);
}

function monthButton(label, count, month, selected) {
  const button = element("button", "", "node");
  button.type = "button";
  button.dataset.month = month;
  button.classList.toggle("selected", month === selected);
  button.append(element("span", label, "label"), element("span", count.toLocaleString(), "count"));
  button.addEventListener("click", () => browseTo({ month, sort: null }));
  return button;
}

function wireBrowse() {
  browsing.observer = new IntersectionObserver(onGridEnd, { rootMargin: "800px 0px" });
  $("browse-more-btn").addEventListener("click", () => loadPage(browsing.key));
  $("browse-grid").addEventListener("keydown", onGridKey);
  $("browse-sort").addEventListener("change", () => browseTo({ sort: $("browse-sort").value }));
  $("browse-sub").addEventListener("change", () =>
    browseTo({ sub: $("browse-sub").checked ? null : "0" }));
}

// --- select by folder, and reference folders, in the duplicate review -------------------------

function referenceFolders() {
  return $("reference").value.split(";").map((f) => f.trim()).filter(Boolean);
}

function showFolderTable() {
  const counts = new Map();
  for (const file of plan.groups.flatMap((g) => g.files)) {
    const folder = parentOf(file.path);
    counts.set(folder, (counts.get(folder) || 0) + 1);
  }
  for (const folder of plan.reference || []) if (!counts.has(folder)) counts.set(folder, 0);
  const rows = [...counts.keys()].sort().map((f) => folderRow(f, counts.get(f)));
  $("folder-table").tBodies[0].replaceChildren(...rows);
  $("by-folder").hidden = plan.groups.length === 0 && !(plan.reference || []).length;
}

function folderRow(folder, count) {
  const row = document.createElement("tr");
  row.dataset.folder = folder;
  const reference = isUnder(folder, plan.reference || []);
  row.classList.toggle("protected", reference);
  const name = element("td", folderOf(`${folder}/x`, plan.folder), "folder-name");
  name.title = folder;
  const select = element("td", "", "choices");
  const verb = VERB[plan.action] || plan.action;
  select.append(
    choiceButton("Keep all", "keep-all", () => selectFolder(folder, "keep")),
    choiceButton(`${verb[0].toUpperCase()}${verb.slice(1)} all`, "act-all",
      () => selectFolder(folder, "act")),
  );
  for (const button of select.querySelectorAll("button")) {
    button.tabIndex = 0;
    button.disabled = reference && button.classList.contains("act-all");
  }
  const box = Object.assign(document.createElement("input"), { type: "checkbox" });
  box.checked = reference;
  box.className = "ref-switch";
  box.setAttribute("aria-label", `reference folder: ${folder}`);
  box.addEventListener("change", () => switchReference(folder, box.checked));
  const cell = element("td", "", "");
  cell.append(box);
  row.append(name, element("td", String(count), "count"), select, cell);
  return row;
}

async function selectFolder(folder, choice) {
  try {
    const edited = await postJson(`/api/plan/${plan.id}/folder`, { folder, choice });
    showPlan(edited);
    const s = edited.selection;
    const skipped = s.groups_skipped ? `; ${s.groups_skipped} groups left alone (all their ` +
      "files are in that folder: one must stay)" : "";
    say(`${s.files_changed} files changed${skipped}.`, false, $("apply-status"));
    $("by-folder").open = true;
  } catch (err) {
    say(err.message, true, $("apply-status"));
  }
}

// The reference switch: a folder in or out of the reference list; the plan is made again.
async function switchReference(folder, on) {
  const others = referenceFolders().filter((f) => f.replace(/\/+$/, "") !== folder);
  $("reference").value = (on ? [...others, folder] : others).join("; ");
  await findDuplicates();
  $("by-folder").open = true;
  const what = on
    ? "is a reference folder now: its files are protected"
    : "is no longer a reference folder";
  say(`${folder} ${what}; the plan was made again.`, false, $("apply-status"));
}

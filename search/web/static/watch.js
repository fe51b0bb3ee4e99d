// serve --watch: a line under the header saying what the watcher does (GET /api/watch).
"use strict";

const WATCH_POLL_MS = 3000;
let watchSeen = "";  // what the watcher last reported: a change means new images, maybe

function watchText(w) {
  const folders = w.folders.join(", ");
  if (w.state === "failed") return `Not watching ${folders}: ${w.error ? w.error.message : "stopped"}`;
  const parts = [`Watching ${folders}`];
  if (w.job) {
    const rate = w.job.rate ? ` · ${w.job.rate.toFixed(1)}/s` : "";
    parts.push(`indexing changes: ${w.job.stage || "walk"} ${w.job.done}/${w.job.total}${rate}`);
  } else if (w.last) {
    const s = w.last.summary;
    const at = w.last.at.slice(11, 16);
    if (w.last.error) parts.push(`${at}: not indexed yet (${w.last.error})`);
    else if (s) parts.push(`last change ${at}: ${s.indexed} indexed, ${s.moved} moved, ${s.removed} removed`);
  } else if (w.state === "starting") {
    parts.push("first run");
  }
  if (w.gone.length) parts.push(`gone (unmounted?): ${w.gone.join(", ")}; nothing removed`);
  return parts.join(" · ");
}

async function refreshWatch() {
  const line = document.getElementById("watch");
  try {
    const w = await api("/api/watch");
    line.hidden = w.state === "off";
    if (line.hidden) return;
    line.textContent = watchText(w);
    line.classList.toggle("error", w.state === "failed" || w.gone.length > 0);
    const seen = `${w.batches}:${w.state}:${w.job ? w.job.done : "-"}`;
    if (seen !== watchSeen) {
      refreshStats();
      watchSeen = seen;
    }
    setTimeout(refreshWatch, WATCH_POLL_MS);
  } catch (err) {
    line.hidden = true;
  }
}

document.addEventListener("DOMContentLoaded", refreshWatch);

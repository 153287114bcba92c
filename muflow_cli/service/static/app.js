// muflow serve's page: sends the chosen files to this server's API and shows what it answers.
// Every name and value from a file or the server goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function pngSrc(b64) {
  return typeof b64 === "string" && B64.test(b64) ? "data:image/png;base64," + b64 : "";
}

function fmt(v, digits) {
  return v === null || v === undefined ? "" : Number(v).toFixed(digits);
}

function setStatus(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "status error" : "status";
}

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function post(path, files, params) {
  const body = new FormData();
  for (const f of files) body.append("file", f, f.name);
  const query = new URLSearchParams(params);
  const res = await fetch(path + "?" + query.toString(), { method: "POST", body, headers: headers() });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const why = data && (data.detail || data.error);
    throw new Error(res.status + ": " + (typeof why === "string" ? why : JSON.stringify(why)));
  }
  return data;
}

function count(label, value, cls) {
  const c = el("div", "count" + (cls ? " " + cls : ""));
  c.appendChild(el("b", null, value));
  c.appendChild(document.createTextNode(label));
  return c;
}

function showSummary(counts, rule, warning) {
  const box = $("counts");
  box.replaceChildren();
  for (const [k, v] of Object.entries(counts)) box.appendChild(count(k.replace("_", " "), v, k === "flagged" && v ? "flagged" : ""));
  $("rule").textContent = rule || "";
  const d = $("domain");
  d.hidden = !warning;
  d.textContent = warning ? "Domain check: " + warning : "";
  $("summary").hidden = false;
}

function flaggedOf(file) {
  return file.rows.filter((r) => r.verdict === "fake").length;
}

function faceCard(row, pic) {
  const fake = row.verdict === "fake";
  const card = el("div", "face" + (fake ? " fake" : ""));
  card.dataset.verdict = row.verdict || "";
  const pics = el("div");
  for (const kind of ["crop", "heatmap"]) {
    const src = pic ? pngSrc(pic[kind]) : "";
    if (!src) continue;
    const img = el("img", kind);
    img.alt = kind + " of face " + row.face;
    img.src = src;
    pics.appendChild(img);
  }
  card.appendChild(pics);
  card.appendChild(el("div", null, "face " + row.face));
  card.appendChild(el("div", fake ? "v-fake" : row.verdict === "inconclusive" ? "v-inconclusive" : "v-real", row.verdict));
  card.appendChild(el("div", null, "score " + fmt(row.score, 4) + " · p " + fmt(row.p_value, 3)));
  if (row.message) card.appendChild(el("div", "note", row.message));
  return card;
}

function showFile(file, blobUrl) {
  const flagged = flaggedOf(file);
  const box = el("article", "file" + (flagged ? " fake" : ""));
  box.appendChild(el("h2", null, file.file));
  if (file.status !== "ok") {
    box.appendChild(el("p", "note", file.status + ": " + file.message));
  }
  const first = file.rows[0] || {};
  if (blobUrl && file.status !== "unreadable" && file.status !== "too_large") {
    const wrap = el("div", "picture");
    const img = el("img");
    img.alt = file.file;
    img.src = blobUrl;
    wrap.appendChild(img);
    if (file.status === "ok" && first.image_width && first.image_height) {
      for (const r of file.rows) {
        const b = el("div", "box" + (r.verdict === "fake" ? " fake" : ""));
        b.style.left = (100 * r.x1 / first.image_width) + "%";
        b.style.top = (100 * r.y1 / first.image_height) + "%";
        b.style.width = (100 * (r.x2 - r.x1) / first.image_width) + "%";
        b.style.height = (100 * (r.y2 - r.y1) / first.image_height) + "%";
        b.appendChild(el("span", null, String(r.face)));
        wrap.appendChild(b);
      }
    }
    box.appendChild(wrap);
  }
  if (file.status === "ok") {
    const faces = el("div", "faces");
    const order = file.rows.map((r, i) => i).sort((a, b) =>
      (file.rows[b].verdict === "fake") - (file.rows[a].verdict === "fake") || file.rows[a].p_value - file.rows[b].p_value);
    for (const i of order) faces.appendChild(faceCard(file.rows[i], (file.pictures || [])[i]));
    box.appendChild(faces);
  }
  return box;
}

function showImages(data, files) {
  const urls = new Map();
  files.forEach((f, i) => urls.set(i, URL.createObjectURL(f)));
  showSummary(data.summary, data.rule, data.domain_warning);
  const results = $("results");
  results.replaceChildren();
  const order = data.files.map((f, i) => i).sort((a, b) => flaggedOf(data.files[b]) - flaggedOf(data.files[a]));
  for (const i of order) results.appendChild(showFile(data.files[i], urls.get(i)));
}

function showVideo(data) {
  const v = data.videos[0] || {};
  showSummary({ faces: v.faces, tracks: v.tracks, flagged: v.flagged }, data.rule + "; face " + data.face_rule, data.domain_warning);
  const results = $("results");
  results.replaceChildren();
  const box = el("article", "file" + (v.flagged ? " fake" : ""));
  box.appendChild(el("h2", null, v.video));
  box.appendChild(el("p", "note", v.status));
  const t = el("table");
  const head = el("tr");
  for (const h of ["track", "from (s)", "to (s)", "faces", "max score", "p-value", "verdict"]) head.appendChild(el("th", null, h));
  t.appendChild(head);
  const tracks = data.tracks.filter((r) => r.status === "ok").sort((a, b) => (b.verdict === "fake") - (a.verdict === "fake") || a.p_value - b.p_value);
  for (const r of tracks) {
    const tr = el("tr", r.verdict === "fake" ? "fake" : "");
    for (const c of [r.track, fmt(r.first_s, 2), fmt(r.last_s, 2), r.faces, fmt(r.max_score, 4), fmt(r.p_value, 3), r.verdict]) tr.appendChild(el("td", null, c));
    t.appendChild(tr);
  }
  box.appendChild(t);
  results.appendChild(box);
}

async function run(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  const videos = files.filter((f) => f.type.startsWith("video/"));
  const fpr = $("fpr").value || "0.05";
  try {
    if (videos.length) {
      setStatus("scanning " + videos[0].name + " …");
      const data = await post("/v1/video", [videos[0]], { fpr });
      showVideo(data);
      setStatus("done: " + videos[0].name);
    } else {
      setStatus("scanning " + files.length + " file(s) …");
      const data = await post("/v1/scan", files, { fpr, heatmap: "true", crops: "true" });
      showImages(data, files);
      setStatus("done: " + files.length + " file(s)");
    }
  } catch (e) {
    setStatus("error " + e.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => run(e.target.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); run(e.dataTransfer.files); });
});

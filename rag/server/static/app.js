// The search page: text, an optional query image, a filter; results as thumbnails; answers with citations.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, objectUrls: [], turns: [], canDelete: false };

function token() {
  return sessionStorage.getItem("rag-token") || "";
}

// A token handed over in the address (the URL `rag serve` prints: /#token=...) is kept for this tab's session
// and taken out of the address bar and its history.
function adoptTokenFromAddress() {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!given) return;
  sessionStorage.setItem("rag-token", given);
  history.replaceState(null, "", location.pathname + location.search);
}

// What the token allows, in a few words ("" when nothing is held back).
function describeAccess(stats) {
  const allowed = { read: "read-only: search, ask and view", write: "may add and delete items", admin: "" };
  const parts = [allowed[stats.scope] || "", stats.tenant ? `tenant ${stats.tenant}` : ""];
  return parts.filter(Boolean).join(" · ");
}

function headers() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

// A fetch() request: GET without a payload; a POST of JSON (a string) or of a form.
function request(payload) {
  const json = typeof payload === "string" ? { "Content-Type": "application/json" } : {};
  return { method: payload ? "POST" : "GET", body: payload, headers: { ...headers(), ...json } };
}

async function call(path, payload) {
  const response = await fetch(path, request(payload));
  await refused(response);
  return response.json();
}

// An error response as an Error with the server's message (and the token box shown on a 401).
async function refused(response) {
  if (response.ok) return;
  const body = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (response.status === 401) {
    $("token-box").hidden = false;
    $("token").focus();
  }
  throw new Error(body.message || `HTTP ${response.status}`);
}

// The server-sent events of a streamed response, as {name, data} objects, while they arrive.
// (EventSource cannot POST a form or send the bearer token: this reads fetch()'s ReadableStream.)
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { name, data: JSON.parse(data.join("\n")) };
    }
  }
}

// /api/ask/stream: the answer shown as its tokens arrive; resolves to the final (done) event's data.
async function askStreaming(payload) {
  const response = await fetch("/api/ask/stream", request(payload));
  await refused(response);
  const out = $("answer-text");
  out.replaceChildren();
  $("answer").hidden = false;
  $("answer").classList.add("streaming");
  try {
    for await (const event of serverEvents(response)) {
      if (event.name === "token") out.append(document.createTextNode(event.data.text));
      else if (event.name === "done") return event.data;
    }
  } finally {
    $("answer").classList.remove("streaming");
  }
  throw new Error("the answer stopped before its end (the connection closed)");
}

async function loadStats() {
  try {
    const stats = await call("/api/stats");
    const llm = stats.llm ? `answers by ${stats.llm}` : "no LLM: answers list the evidence";
    $("stats").textContent = `${stats.collection} · ${stats.count} items · ${stats.encoder.variant} · ${llm}`;
    $("top-k").placeholder = String(stats.top_k);
    showRerankers(stats);
    state.canDelete = Boolean(stats.can_delete);
    $("upload-box").hidden = !stats.can_upload;
    $("ocr-box").hidden = !stats.can_upload;
    $("access").textContent = describeAccess(stats);
    $("token-box").hidden = !token();
  } catch (error) {
    $("stats").textContent = error.message;
  }
}

// The rerankers the operator allows, by the labels the server gives; the default option says which one it uses.
function showRerankers(stats) {
  const select = $("reranker");
  const choices = stats.rerankers || [];
  select.options[0].textContent = `server default (${stats.reranker || "none"})`;
  for (const label of choices) {
    if ([...select.options].some((option) => option.value === label)) continue;
    const option = document.createElement("option");
    option.value = label;
    option.textContent = label;
    select.append(option);
  }
  $("reranker-box").hidden = choices.length === 0;
}

// -- the query image ----------------------------------------------------------------------------

function setImage(file) {
  if (file && !file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image`, true);
    return;
  }
  state.image = file || null;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  $("clear-image").hidden = !file;
  $("drop-hint").hidden = Boolean(file);
  $("drop").classList.toggle("has-image", Boolean(file));
  if (file) preview.src = URL.createObjectURL(file);
  else preview.removeAttribute("src");
}

function wireDropZone() {
  const drop = $("drop");
  $("image").addEventListener("change", (event) => setImage(event.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    setImage(event.dataTransfer.files[0]);
  });
  $("clear-image").addEventListener("click", (event) => {
    event.stopPropagation();
    $("image").value = "";
    setImage(null);
  });
}

// -- results ------------------------------------------------------------------------------------

// The query options by the names of the API's model (QueryOptions in rag/retrieval/options.py); a new option
// with a control on this page is one more line here.
function queryOptions() {
  const options = { text: $("text").value, hybrid: $("hybrid").checked, dedup: $("dedup").checked };
  if ($("mode").value) options.mode = $("mode").value;
  if ($("top-k").value) options.top_k = Number($("top-k").value);
  // Sent as typed: the server reads key=value pairs and JSON objects alike (one parser for the CLI, API and page).
  const filter = $("filter").value.trim();
  if (filter) options.filter = filter;
  const blend = $("blend").value.trim();
  if (blend) options.blend = blend;
  if ($("reranker").value) options.reranker = $("reranker").value;
  return options;
}

// A JSON body; with a query image, the same fields as a form that carries the image as a file.
function queryBody(extra = {}) {
  const options = { ...queryOptions(), ...extra };
  if (!state.image) return JSON.stringify(options);
  const form = new FormData();
  for (const [name, value] of Object.entries(options)) {
    form.append(name, name === "history" ? JSON.stringify(value) : String(value));
  }
  form.append("image", state.image, state.image.name || "query.png");
  return form;
}

async function loadThumbnail(img, url) {
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const objectUrl = URL.createObjectURL(await response.blob());
  state.objectUrls.push(objectUrl);
  img.src = objectUrl;
}

// The text on one line, cut to `limit` characters with an ellipsis (as the command line shows it).
function snippet(text, limit) {
  const line = (text || "").split(/\s+/).join(" ").trim();
  return line.length <= limit ? line : `${line.slice(0, limit - 1)}…`;
}

// The result's document, opened at the item's anchor less "&chunk=N" (which only keeps names apart). With a
// token the file is fetched with it; pages and drawings then open as plain text, so no script of theirs runs here.
function linkSource(link, item) {
  const url = `/api/items/${encodeURIComponent(item.id)}/source`;
  const fragment = (item.anchor || "").replace(/(^|&)chunk=\d+/, "").replace(/^&/, "");
  link.href = fragment ? `${url}#${fragment}` : url;
  link.addEventListener("click", async (event) => {
    if (!token()) return;
    event.preventDefault();
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) return setStatus(`cannot open ${item.document}: HTTP ${response.status}`, true);
    const type = response.headers.get("content-type") || "text/plain";
    const safe = /html|svg|xml/.test(type) ? "text/plain" : type;
    const objectUrl = URL.createObjectURL(new Blob([await response.arrayBuffer()], { type: safe }));
    state.objectUrls.push(objectUrl);
    window.open(fragment ? `${objectUrl}#${fragment}` : objectUrl, "_blank", "noopener");
  });
}

function card(item) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  node.id = `result-${item.rank}`;
  node.querySelector(".rank").textContent = `[${item.rank}]`;
  const score = node.querySelector(".score");
  score.textContent = item.score == null ? "" : item.score.toFixed(4);
  if (item.rerank_score != null) {
    score.textContent = `rerank ${item.rerank_score.toFixed(3)} · ${score.textContent}`;
    score.title = "The cross-encoder's score (results are sorted by it), then the retrieval's";
  }
  node.querySelector(".modality").textContent = item.metadata.modality || "";
  node.querySelector(".duplicates").textContent = item.duplicates.length ? `+${item.duplicates.length} merged` : "";
  node.querySelector(".text").textContent = item.text || "(no text)";
  // Named by its document and, apart, where in it the item is (#page=7, #tracking-faults).
  node.querySelector(".document").textContent = item.document;
  node.querySelector(".anchor").textContent = item.anchor || "";
  node.querySelector(".source").title = `${item.source} · id ${item.id}`;
  linkSource(node.querySelector(".open"), item);
  const thumb = node.querySelector(".thumb");
  if (item.image_url) {
    const img = document.createElement("img");
    img.alt = item.text || item.name;
    thumb.prepend(img);
    loadThumbnail(img, item.image_url).catch(() => thumb.classList.add("broken"));
  } else {
    // A text chunk reads in place of a picture: a snippet of it, the whole text on hover.
    thumb.classList.add("text-only");
    const excerpt = document.createElement("blockquote");
    excerpt.className = "excerpt";
    excerpt.textContent = snippet(item.text, 600);
    excerpt.title = item.text;
    thumb.append(excerpt);
    node.querySelector(".text").hidden = true;
  }
  if (item.cited) node.classList.add("cited");
  const remove = node.querySelector(".delete");
  remove.hidden = !state.canDelete;
  remove.addEventListener("click", () => deleteItem(item, node));
  return node;
}

// DELETE /api/items for one result, by its id, once the user confirms; its card goes with it.
async function deleteItem(item, node) {
  if (!window.confirm(`Delete ${item.name} from the collection? The file it came from is kept.`)) return;
  try {
    const filter = encodeURIComponent(`id=${item.id}`);
    const response = await fetch(`/api/items?filter=${filter}`, { method: "DELETE", headers: headers() });
    await refused(response);
    const body = await response.json();
    node.remove();
    setStatus(`deleted ${body.deleted} item: ${item.name}`);
    loadStats();
  } catch (error) {
    setStatus(error.message, true);
  }
}

function showResults(items) {
  state.objectUrls.forEach((url) => URL.revokeObjectURL(url));
  state.objectUrls = [];
  $("results").replaceChildren(...items.map(card));
}

// Nothing from an earlier query stays on screen: its results and answer would read as this query's.
function clearResults() {
  showResults([]);
  $("answer").hidden = true;
  $("answer-text").replaceChildren();
  $("answer-cut").hidden = true;
  $("citation-check").replaceChildren();
  $("citation-check").hidden = true;
  $("searched").textContent = "";
}

// The check of the answer's citation markers, in plain words; the answer itself is shown as written.
function showCheck(check, shown) {
  const box = $("citation-check");
  box.replaceChildren();
  if (!check) return;
  const lines = [];
  for (const number of check.unknown_citations) {
    lines.push(`[${number}] is not one of the ${shown} items the answer was given (unknown citation)`);
  }
  if (check.uncited) lines.push(`The answer cites none of the ${shown} items it was given.`);
  for (const sentence of check.uncited_sentences) lines.push(`No citation: “${sentence}”`);
  for (const line of lines) {
    const item = document.createElement("li");
    item.textContent = line;
    box.append(item);
  }
  box.hidden = lines.length === 0;
}

// The answer as text nodes, with each [n] marker a link to its card (nothing is parsed as HTML); a marker that
// names none of the `shown` items is marked as unknown, not linked.
function showAnswer(answer, shown) {
  const out = $("answer-text");
  out.replaceChildren();
  for (const part of answer.split(/(\[\d+\])/)) {
    const marker = part.match(/^\[(\d+)\]$/);
    const number = marker ? Number(marker[1]) : 0;
    if (marker && (number < 1 || number > shown)) {
      const unknown = document.createElement("span");
      unknown.className = "unknown-citation";
      unknown.title = "unknown citation: no item has this number";
      unknown.textContent = part;
      out.append(unknown);
    } else if (marker) {
      const link = document.createElement("a");
      link.href = `#result-${marker[1]}`;
      link.textContent = part;
      out.append(link);
    } else {
      out.append(document.createTextNode(part));
    }
  }
  $("answer").hidden = false;
}

// A partial answer (the stream broke off, or the LLM hit its token limit) is marked where it ends.
function showCutOff(body) {
  $("answer-cut").textContent = body.status === "partial" ? `Answer cut off: ${body.error || "the LLM stopped early"}` : "";
  $("answer-cut").hidden = body.status !== "partial";
}

function answerFailure(body) {
  return body.status === "partial" ? "The answer broke off:" : "The LLM failed:";
}

// "blend fused 0.60 + image 0.40", marked when it is the blend `rag eval --tune` saved.
function describeBlend(blend) {
  if (!blend) return "";
  const parts = Object.entries(blend.weights).map(([name, weight]) =>
    blend.fusion === "rrf" ? name : `${name} ${weight.toFixed(2)}`);
  return `blend ${parts.join(" + ")}${blend.fusion === "rrf" ? " (rrf)" : ""}${blend.tuned ? " (tuned)" : ""}`;
}

function mergedNote(merged) {
  return merged ? `${merged} duplicate${merged === 1 ? "" : "s"} merged` : "";
}

// -- the conversation: kept until reset, sent as `history` with each question ---------------------

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function remember(question, image, body) {
  const said = ["answered", "partial"].includes(body.status) ? body.answer : `(no answer: ${body.status})`;
  state.turns.push({ role: "user", content: question, image: image ? await dataUrl(image) : null });
  state.turns.push({ role: "assistant", content: said });
  showConversation();
}

function showConversation() {
  const list = $("conversation-turns");
  list.replaceChildren();
  for (const turn of state.turns) {
    const item = document.createElement("li");
    item.className = turn.role;
    item.textContent = `${turn.role === "user" ? "You" : "Answer"}: ${turn.content}${turn.image ? " (with a picture)" : ""}`;
    list.append(item);
  }
  $("conversation").hidden = state.turns.length === 0;
}

function resetConversation() {
  state.turns = [];
  showConversation();
  clearResults();
  setStatus("New conversation: the next question starts afresh.");
}

async function run(kind) {
  if (!$("text").value.trim() && !state.image) {
    setStatus("Type a query or drop an image first.", true);
    return;
  }
  if (kind === "ask" && !$("text").value.trim()) {
    setStatus("Asking needs a question in the text box.", true);
    return;
  }
  setStatus(kind === "ask" ? "Asking…" : "Searching…");
  clearResults();
  const started = performance.now();
  try {
    const question = $("text").value.trim();
    const image = state.image;
    const body = kind === "ask"
      ? await askStreaming(queryBody({ history: state.turns }))
      : await call("/api/search", queryBody());
    const items = kind === "ask" ? body.citations : body.results;
    showResults(items);
    if (kind === "ask") {
      showAnswer(body.answer, items.length);
      showCutOff(body);
      showCheck(body.citation_check, items.length);
      $("searched").textContent = body.query ? `Searched for: ${body.query}` : "";
      await remember(question, image, body);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    const summary = [`${items.length} results`, body.mode, describeBlend(body.blend), `scores: ${body.score_scale}`,
      mergedNote(body.merged), `${seconds} s`].filter(Boolean).join(" · ");
    if (body.error) setStatus(`${answerFailure(body)} ${body.error} · ${summary}`, true);
    else setStatus(summary);
  } catch (error) {
    clearResults();
    setStatus(error.message, true);
  }
}

// -- adding files ----------------------------------------------------------------------------------

async function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("files", file);
  if ($("ocr").value) form.append("ocr", $("ocr").value);
  setStatus(`Adding ${files.length} file(s)…`);
  try {
    let job = await call("/api/ingest", form);
    while (job.status === "queued" || job.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await call(`/api/ingest/${encodeURIComponent(job.id)}`);
    }
    const listed = job.problems.map((p) => `${p.source}: ${p.reason}`).join("; ");
    const problems = job.problem_count ? ` · ${job.problem_count} problem(s): ${listed}` : "";
    setStatus(`${job.status}: ${job.added} item(s) added, ${job.unchanged} unchanged${problems}`, job.status !== "done");
    loadStats();
  } catch (error) {
    setStatus(error.message, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  adoptTokenFromAddress();
  $("token").value = token();
  $("upload").addEventListener("change", (event) => {
    upload([...event.target.files]);
    event.target.value = "";
  });
  $("token").addEventListener("change", (event) => {
    sessionStorage.setItem("rag-token", event.target.value.trim());
    loadStats();
  });
  wireDropZone();
  $("query").addEventListener("submit", (event) => {
    event.preventDefault();
    run("search");
  });
  $("ask").addEventListener("click", () => run("ask"));
  $("reset-conversation").addEventListener("click", resetConversation);
  loadStats();
});

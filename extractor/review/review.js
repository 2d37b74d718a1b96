"use strict";
// The review page's documents, built from JSON blocks with textContent only (never innerHTML).
// The list shows a page of documents at a time; a document's body (text, highlights, relations)
// is built when it scrolls near the screen, from a block of bodies parsed the first time it is
// needed. So 10,000 documents open as fast as 10.
(function () {
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const docs = data.documents;  // the index: path, title, status, ungrounded, types, find
  const CHUNK = data.chunk, PAGE = data.page;
  const list = document.getElementById("docs");
  const pager = document.getElementById("pager");
  const shown = document.getElementById("shown");
  const chunks = [];
  const sections = new Map();  // document index → its section, for the page shown
  const waiting = new Set();  // documents whose block the browser has not read yet
  let matches = [];
  let pageNo = 0;
  const NEAR = "1200px 0px";

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  // class names from data keep letters, digits, - and _ only
  function token(value) { return String(value).replace(/[^A-Za-z0-9_-]/g, ""); }

  // verify's spans count code points; JavaScript strings count UTF-16 units
  function unitIndex(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return null;
    const map = [];
    let unit = 0;
    for (const ch of text) { map.push(unit); unit += ch.length; }
    map.push(unit);
    return map;
  }
  function at(map, i) { return map === null ? i : map[Math.min(i, map.length - 1)]; }

  // ------------------------------------------------------------ a page of shells: file name and status

  function shell(i) {
    const doc = docs[i];
    const section = el("section", "doc");
    section.id = "doc-" + i;
    section.dataset.index = String(i);
    section.dataset.path = doc.path;
    section.dataset.status = doc.status;
    const h = el("h2");
    h.append(el("span", "path", doc.path), el("span", "badge " + token(doc.status), doc.status));
    if (doc.title && doc.title !== doc.path) h.append(el("span", "title", doc.title));
    section.append(h, el("div", "body pending", "…"));
    return section;
  }

  function showPage(n) {
    const pages = Math.max(1, Math.ceil(matches.length / PAGE));
    pageNo = Math.min(Math.max(n, 0), pages - 1);
    observer.disconnect();
    sections.clear();
    waiting.clear();
    const frag = document.createDocumentFragment();
    const first = pageNo * PAGE;
    for (const i of matches.slice(first, first + PAGE)) {
      const section = shell(i);
      sections.set(i, section);
      frag.append(section);
    }
    list.replaceChildren(frag);
    let n0 = 0;
    for (const [i, section] of sections) {
      if (n0++ < 3) fill(i); else observer.observe(section);  // the first screen without waiting for the observer
    }
    const last = Math.min(first + PAGE, matches.length);
    const of = matches.length < docs.length ? " (of " + docs.length + " in the job)" : "";
    shown.textContent = !matches.length ? "no document matches" + of
      : pages > 1 ? "showing " + (first + 1) + "–" + last + " of " + matches.length + " documents" + of
      : matches.length + (matches.length === 1 ? " document" : " documents") + of;
    pager.replaceChildren();
    if (pages > 1) {
      const prev = el("button", "page", "← previous");
      prev.type = "button"; prev.disabled = pageNo === 0;
      prev.addEventListener("click", () => { showPage(pageNo - 1); list.scrollIntoView(); });
      const next = el("button", "page", "next →");
      next.type = "button"; next.disabled = pageNo === pages - 1;
      next.addEventListener("click", () => { showPage(pageNo + 1); list.scrollIntoView(); });
      pager.append(prev, el("span", "meta", " page " + (pageNo + 1) + " of " + pages + " "), next);
    }
  }

  // ------------------------------------------------------------ a document's body, when it is near

  function bodyOf(i) {
    const c = Math.floor(i / CHUNK);
    if (chunks[c] === undefined) {
      const block = document.getElementById("chunk-" + c);
      if (!block) return null;  // still being read: filled on DOMContentLoaded
      chunks[c] = JSON.parse(block.textContent);
    }
    return chunks[c][i - c * CHUNK];
  }

  function fill(i) {
    const section = sections.get(i);
    if (!section || section.dataset.filled) return section;
    const doc = bodyOf(i);
    if (doc === null) { waiting.add(i); return section; }
    section.dataset.filled = "1";
    observer.unobserve(section);
    const body = el("div", "body");
    if (doc.reasons.length) {
      const ul = el("ul", "reasons");
      for (const reason of doc.reasons) ul.append(el("li", null, reason));
      body.append(ul);
    }
    body.append(textOf(doc));
    const facts = el("div", "facts");
    if (doc.leaked.length) {
      facts.append(el("h3", null, "Leaked: found only in other documents"));
      const ul = el("ul");
      for (const [name, type, sources] of doc.leaked) {
        const li = el("li", "leaked");
        li.append(el("span", "name", name), " ", el("span", "kind", type), " — from ");
        sources.forEach((source, n) => { if (n) li.append(", "); li.append(sourceLink(source)); });
        ul.append(li);
      }
      facts.append(ul);
    }
    if (doc.ungrounded.length) {
      facts.append(el("h3", null, "Ungrounded: found in no document"));
      const ul = el("ul");
      for (const [name, type] of doc.ungrounded) {
        const li = el("li", "ungrounded");
        li.append(el("span", "name", name), " ", el("span", "kind", type));
        ul.append(li);
      }
      facts.append(ul);
    }
    if (doc.relations.length) {
      facts.append(el("h3", null, "Relations"));
      facts.append(relationsOf(doc, i));
    }
    body.append(facts);
    section.replaceChild(body, section.querySelector(".body"));
    return section;
  }

  function textOf(doc) {
    const box = el("div", "text");
    const text = doc.text;
    const map = unitIndex(text);
    let pos = 0;
    for (const [start, end, verdict, name, type, keys] of doc.marks) {
      const s = at(map, start), e = at(map, end);
      if (s < pos) continue;
      if (s > pos) box.append(text.slice(pos, s));
      const mark = el("mark", "v-" + token(verdict), text.slice(s, e));
      mark.dataset.verdict = verdict;
      mark.dataset.span = start + "," + end;
      mark.title = verdict === "source" ? name + " — leaked from here into another document"
        : name + (type ? " (" + type + ")" : "") + " — " + verdict;
      if (keys.length) mark.landing = keys;
      box.append(mark);
      pos = e;
    }
    if (pos < text.length) box.append(text.slice(pos));
    return box;
  }

  function sourceLink(source) {
    if (typeof source.doc === "number") {
      const a = el("a", "source", source.path);
      a.href = "#doc-" + source.doc;
      a.addEventListener("click", (event) => { event.preventDefault(); goTo(source.doc, source.key); });
      return a;
    }
    if (source.href) {
      const a = el("a", "source outside", source.path);
      a.href = source.href;
      a.title = source.outside || "";
      return a;
    }
    const span = el("span", "source outside", source.path);
    if (source.outside) span.title = source.outside;
    return span;
  }

  function relationsOf(doc, i) {
    const table = el("table", "relations");
    const head = el("tr");
    for (const h of ["source", "relation", "target", "verdict", "evidence"]) head.append(el("th", null, h));
    table.append(head);
    const map = unitIndex(doc.text);
    for (const [source, type, target, verdict, quote, span, from] of doc.relations) {
      const tr = el("tr");
      tr.append(el("td", null, source), el("td", "kind", type), el("td", null, target));
      const cell = el("td", "verdict v-" + token(verdict), verdict);
      if (from.length) {
        cell.append(" from ");
        from.forEach((where, n) => { if (n) cell.append(", "); cell.append(sourceLink(where)); });
      }
      tr.append(cell);
      const evidence = el("td", "evidence");
      const words = span ? doc.text.slice(at(map, span[0]), at(map, span[1])) : (quote || "");
      evidence.append(quoted(words, [source, target]));
      if (span) {
        const button = el("button", "show", "show in text");
        button.type = "button";
        button.addEventListener("click", () => showEvidence(i, span));
        evidence.append(button);
      } else if (quote) {
        evidence.append(el("span", "kind", " (not in the text)"));
      }
      tr.append(evidence);
      table.append(tr);
    }
    return table;
  }

  // the quote, with the relation's two names highlighted where it spells them
  function quoted(quote, names) {
    const frag = document.createDocumentFragment();
    const lower = quote.toLowerCase();
    const hits = [];
    for (const name of names) {
      const at = name ? lower.indexOf(name.toLowerCase()) : -1;
      if (at >= 0) hits.push([at, at + name.length]);
    }
    hits.sort((a, b) => a[0] - b[0]);
    let pos = 0;
    for (const [s, e] of hits) {
      if (s < pos) continue;
      frag.append(quote.slice(pos, s), el("mark", "evidence", quote.slice(s, e)));
      pos = e;
    }
    frag.append(quote.slice(pos));
    return frag;
  }

  // ------------------------------------------------------------ moving around

  function goTo(index, key) {
    if (!matches.includes(index)) resetFilters();
    const page = Math.floor(matches.indexOf(index) / PAGE);
    if (page !== pageNo || !sections.has(index)) showPage(page);
    const section = fill(index);
    if (!section.dataset.filled) {  // its block is still being read
      document.addEventListener("DOMContentLoaded", () => goTo(index, key), { once: true });
      return;
    }
    let target = null;
    for (const mark of section.querySelectorAll("mark")) {
      if (mark.landing && mark.landing.includes(key)) { target = mark; break; }
    }
    pin(target || section);
    if (target) {
      target.classList.remove("flash");
      void target.offsetWidth;
      target.classList.add("flash");
    }
    history.replaceState(null, "", "#doc-" + index);
  }

  // Keep a jump's target on screen while the documents around it fill in (their heights change).
  let pinned = null, pinTimer = 0;
  function pin(node) {
    pinned = node;
    node.scrollIntoView({ block: "center" });
    clearTimeout(pinTimer);
    pinTimer = setTimeout(() => { pinned = null; }, 1500);
  }
  function keepPinned() {
    if (pinned) pinned.scrollIntoView({ block: "center" });
  }

  function showEvidence(i, span) {
    const box = sections.get(i).querySelector(".text");
    const range = rangeOf(box, bodyOf(i).text, span);
    if (!range) return;
    if (typeof Highlight === "function" && CSS.highlights) {
      CSS.highlights.set("evidence", new Highlight(range));
    } else {
      const selection = getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    const rect = range.getBoundingClientRect();
    window.scrollBy({ top: rect.top - window.innerHeight / 3 });
  }

  function rangeOf(box, text, span) {
    const map = unitIndex(text);
    const start = at(map, span[0]), end = at(map, span[1]);
    const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    let pos = 0, begun = false, node;
    while ((node = walker.nextNode())) {
      const len = node.data.length;
      if (!begun && start <= pos + len) { range.setStart(node, start - pos); begun = true; }
      if (begun && end <= pos + len) { range.setEnd(node, end - pos); return range; }
      pos += len;
    }
    return null;
  }

  // ------------------------------------------------------------ filters and search

  const fStatus = document.getElementById("f-status");
  const fUngrounded = document.getElementById("f-ungrounded");
  const fType = document.getElementById("f-type");
  const fSearch = document.getElementById("f-search");

  const labels = [];
  function label(i) {  // file name and title, lower-cased once
    if (labels[i] === undefined) labels[i] = (docs[i].path + "\n" + docs[i].title).toLowerCase();
    return labels[i];
  }

  function applyFilters() {
    const status = fStatus.value, type = fType.value, ungrounded = fUngrounded.checked;
    const words = fSearch.value.toLowerCase().split(/\s+/).filter(Boolean);
    matches = [];
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i];
      if ((!status || doc.status === status)
        && (!ungrounded || doc.ungrounded > 0)
        && (!type || doc.types.includes(type))
        && (!words.length || words.every((w) => doc.find.includes(w) || label(i).includes(w)))) matches.push(i);
    }
    showPage(0);
    list.dataset.query = fSearch.value;  // what the shown documents were filtered by
  }

  function resetFilters() {
    fStatus.value = ""; fType.value = ""; fUngrounded.checked = false; fSearch.value = "";
    applyFilters();
  }

  let searchTimer = 0;
  fStatus.addEventListener("change", applyFilters);
  fUngrounded.addEventListener("change", applyFilters);
  fType.addEventListener("change", applyFilters);
  fSearch.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(applyFilters, 120); });

  // ------------------------------------------------------------ start

  const observer = new IntersectionObserver((entries) => {
    let any = false;
    for (const entry of entries) {
      if (entry.isIntersecting) { fill(Number(entry.target.dataset.index)); any = true; }
    }
    if (any) keepPinned();
  }, { rootMargin: NEAR });

  const types = new Set();
  for (const doc of docs) for (const t of doc.types) types.add(t);
  for (const t of [...types].sort()) {
    const option = el("option", null, t);
    option.value = t;
    fType.append(option);
  }
  applyFilters();
  document.addEventListener("DOMContentLoaded", () => {
    for (const i of [...waiting]) { waiting.delete(i); fill(i); }
    const hash = /^#doc-(\d+)$/.exec(location.hash);
    if (hash && Number(hash[1]) < docs.length) goTo(Number(hash[1]), "");
    document.documentElement.dataset.loaded = "1";
  });
  document.documentElement.dataset.ready = "1";
  performance.mark("review-ready");
})();

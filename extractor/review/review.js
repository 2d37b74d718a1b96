"use strict";
// The review page's documents: built from the JSON block with textContent only (never innerHTML),
// each document's body when it scrolls near the screen, so 10,000 documents open as fast as 10.
(function () {
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const docs = data.documents;
  const list = document.getElementById("docs");
  const shown = document.getElementById("shown");
  const sections = new Array(docs.length);
  const filled = new Uint8Array(docs.length);
  const haystacks = new Array(docs.length);
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

  // ------------------------------------------------------------ shells: file name and status, at once

  function shell(doc, i) {
    const section = el("section", "doc");
    section.id = "doc-" + i;
    section.dataset.index = String(i);
    section.dataset.path = doc.path;
    section.dataset.status = doc.status;
    const h = el("h2");
    h.append(el("span", "path", doc.path), el("span", "badge " + token(doc.status), doc.status));
    if (doc.title && doc.title !== doc.path) h.append(el("span", "title", doc.title));
    section.append(h);
    const body = el("div", "body pending", "…");
    body.style.minHeight = Math.min(40 + Math.ceil(doc.text.length / 95) * 22, 560) + 160 + "px";
    section.append(body);
    return section;
  }

  // ------------------------------------------------------------ a document's body, when it is near

  function fill(i) {
    if (filled[i]) return sections[i];
    filled[i] = 1;
    const doc = docs[i];
    const section = sections[i];
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
    for (const rel of doc.relations) {
      const tr = el("tr");
      tr.append(el("td", null, rel.source), el("td", "kind", rel.type), el("td", null, rel.target));
      const verdict = el("td", "verdict v-" + token(rel.verdict), rel.verdict);
      if (rel.from.length) {
        verdict.append(" from ");
        rel.from.forEach((source, n) => { if (n) verdict.append(", "); verdict.append(sourceLink(source)); });
      }
      tr.append(verdict);
      const evidence = el("td", "evidence");
      evidence.append(quoted(rel.evidence, [rel.source, rel.target]));
      if (rel.span) {
        const button = el("button", "show", "show in text");
        button.type = "button";
        button.addEventListener("click", () => showEvidence(i, rel.span));
        evidence.append(button);
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
    if (sections[index].hidden) { resetFilters(); }
    const section = fill(index);
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
    const box = sections[i].querySelector(".text");
    const range = rangeOf(box, docs[i].text, span);
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

  function haystack(i) {
    if (haystacks[i] === undefined) {
      const doc = docs[i];
      const parts = [doc.path, doc.title, ...doc.names];
      for (const rel of doc.relations) parts.push(rel.source, rel.target);
      haystacks[i] = parts.join("\n").toLowerCase();
    }
    return haystacks[i];
  }

  function applyFilters() {
    const status = fStatus.value, type = fType.value, ungrounded = fUngrounded.checked;
    const words = fSearch.value.toLowerCase().split(/\s+/).filter(Boolean);
    let count = 0;
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i];
      const keep = (!status || doc.status === status)
        && (!ungrounded || doc.ungrounded.length > 0)
        && (!type || doc.types.includes(type))
        && (!words.length || words.every((w) => haystack(i).includes(w)));
      if (sections[i].hidden === keep) sections[i].hidden = !keep;
      if (keep) count++;
    }
    shown.textContent = "showing " + count + " of " + docs.length + " documents";
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
  const frag = document.createDocumentFragment();
  for (let i = 0; i < docs.length; i++) {
    sections[i] = shell(docs[i], i);
    for (const t of docs[i].types) types.add(t);
    frag.append(sections[i]);
  }
  for (const t of [...types].sort()) {
    const option = el("option", null, t);
    option.value = t;
    fType.append(option);
  }
  list.append(frag);
  for (let i = 0; i < Math.min(4, docs.length); i++) fill(i);  // the first screen, without waiting for the observer
  for (let i = 4; i < docs.length; i++) observer.observe(sections[i]);
  applyFilters();
  const hash = /^#doc-(\d+)$/.exec(location.hash);
  if (hash && Number(hash[1]) < docs.length) goTo(Number(hash[1]), "");
  document.documentElement.dataset.ready = "1";
  performance.mark("review-ready");
})();

// The box editor of the review app: boxes on an SVG over the image, edited with mouse and keyboard.
// Mouse: drag on the image draws a box, drag a box moves it, drag a corner handle resizes it; the wheel zooms
// about the cursor; Space+drag or the middle button pans.
// Keys: Tab / Shift+Tab select the next / previous box, 1-9 set the class (of the selected box, or of the
// next box drawn), arrows nudge by 1 px (Shift: 10 px; Alt: resize instead of move) or pan the zoomed view
// when no box is selected, Delete or Backspace removes, Escape deselects, + / - zoom, 0 fits the image.
// On a part page: C confirms the model, F marks a false alarm, Enter saves the boxes, N / P open the next /
// previous part of the queue. Keys do nothing while typing in a field, or with Ctrl / Meta held.
// Boxes are kept in image pixels and written as JSON into the form's hidden "boxes" field. Each box has a
// small tag (its number and class, abbreviated) placed outside the box where it collides with no other tag
// and stays inside the image; the full text (number, class, score) shows on hover and on the selected box.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const TAG_PX = 12; // tag text height on screen, whatever the zoom
  const svg = document.getElementById("canvas");
  const field = document.getElementById("boxes-field");
  const form = document.getElementById("decision-form");
  const data = JSON.parse(document.getElementById("editor-data").textContent);
  const classes = data.classes;
  const classList = document.getElementById("class-list");
  const boxList = document.getElementById("box-list");
  const editState = document.getElementById("edit-state");
  const zoomLevel = document.getElementById("zoom-level");
  let boxes = data.boxes.map((b) => ({
    cls: b.class,
    x1: b.box[0], y1: b.box[1], x2: b.box[2], y2: b.box[3],
    score: typeof b.confidence === "number" ? b.confidence.toFixed(2) : "",
    disposition: b.disposition || "label",
  }));
  let selected = -1;
  let drawClass = classes.length ? classes[0] : "";
  let drag = null;
  let width = 0;
  let height = 0;
  let view = null; // the part of the image shown: {x, y, w, h} in image pixels
  let spaceDown = false;
  let submitting = false;

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const round = (v) => Math.round(v * 100) / 100;
  const posted = () => JSON.stringify(boxes.map((b) => ({ class: b.cls, box: [round(b.x1), round(b.y1), round(b.x2), round(b.y2)] })));
  const initial = posted();

  function write() {
    if (field) field.value = posted();
    if (!editState) return;
    const changed = posted() !== initial;
    if (svg) svg.dataset.changed = String(changed);
    if (changed) editState.textContent = "Edited: Enter saves a correction.";
    else if (data.decided === true) editState.textContent = "Unchanged: Enter records nothing new; the decision in force stays.";
    else if (data.decided === false) editState.textContent = "Unchanged: Enter confirms the model's boxes.";
    else editState.textContent = "";
  }

  function element(name, attributes, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    parent.appendChild(node);
    return node;
  }

  const fullText = (b, i) => `${i + 1} ${b.cls}${b.score ? " " + b.score : ""}`;
  const shortText = (b, i) => `${i + 1} ${b.cls.length > 6 ? b.cls.slice(0, 5) + "…" : b.cls}`;

  function renderLists() {
    classList.replaceChildren();
    classes.forEach((name, i) => {
      const item = document.createElement("li");
      item.textContent = (i < 9 ? `${i + 1}: ` : "") + name;
      const active = selected >= 0 ? boxes[selected].cls === name : drawClass === name;
      if (active) item.className = "active";
      classList.appendChild(item);
    });
    boxList.replaceChildren();
    boxes.forEach((b, i) => {
      const row = document.createElement("tr");
      row.className = b.disposition + (i === selected ? " selected" : "");
      for (const text of [String(i + 1), b.cls, [b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(0)).join(", "), b.score]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      row.addEventListener("click", () => { selected = i; render(); });
      boxList.appendChild(row);
    });
  }

  // Screen pixels per image pixel at the current zoom.
  const scale = () => (svg.getScreenCTM() ? svg.getScreenCTM().a : 1) || 1;

  const overlap = (a, b) => Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x)) *
    Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));

  // Where a tag of size w x h goes for box b: the first candidate place that overlaps no placed tag, else the
  // one that overlaps least; every candidate is pulled inside the image.
  function place(b, w, h, placed, gap) {
    const candidates = [
      [b.x1, b.y1 - h - gap], [b.x2 - w, b.y1 - h - gap], [b.x1, b.y2 + gap], [b.x2 - w, b.y2 + gap],
      [b.x2 + gap, b.y1], [b.x1 - w - gap, b.y1], [b.x2 + gap, b.y2 - h], [b.x1 - w - gap, b.y2 - h],
      [b.x1 + gap, b.y1 + gap],
    ].map(([x, y]) => ({ x: clamp(x, 0, Math.max(0, width - w)), y: clamp(y, 0, Math.max(0, height - h)), w, h }));
    let best = candidates[0];
    let bestCost = Infinity;
    for (const c of candidates) {
      const cost = placed.reduce((sum, p) => sum + overlap(c, p), 0);
      if (cost === 0) return c;
      if (cost < bestCost) { best = c; bestCost = cost; }
    }
    return best;
  }

  function renderTags(layer) {
    const s = scale();
    const size = TAG_PX / s;
    const pad = 2 / s;
    const placed = [];
    const order = boxes.map((_, i) => i).sort((a, b) => (a === selected ? -1 : b === selected ? 1 : a - b));
    for (const i of order) {
      const b = boxes[i];
      const group = element("g", { class: `tag ${b.disposition}${i === selected ? " selected" : ""}`, "data-index": i }, layer);
      const title = element("title", {}, group);
      title.textContent = fullText(b, i);
      const back = element("rect", { "data-index": i, "data-tag": "1" }, group);
      const text = element("text", { "font-size": size, "data-index": i, "data-tag": "1" }, group);
      text.textContent = i === selected ? fullText(b, i) : shortText(b, i);
      const w = text.getComputedTextLength() + 2 * pad;
      const h = size * 1.25;
      const at = place(b, w, h, placed, pad);
      placed.push(at);
      Object.entries({ x: at.x, y: at.y, width: w, height: h }).forEach(([k, v]) => back.setAttribute(k, v));
      text.setAttribute("x", at.x + pad);
      text.setAttribute("y", at.y + size * 0.98);
    }
  }

  function render() {
    if (!svg || !view) {
      renderLists();
      return;
    }
    svg.querySelectorAll("g.box, g.tags").forEach((node) => node.remove());
    const handle = 5 / scale();
    boxes.forEach((b, i) => {
      const group = element("g", { class: `box ${b.disposition}${i === selected ? " selected" : ""}` }, svg);
      const rect = element("rect", { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, "data-index": i,
        "vector-effect": "non-scaling-stroke" }, group);
      element("title", {}, rect).textContent = fullText(b, i);
      if (i === selected) {
        for (const [cx, cy, corner] of [[b.x1, b.y1, "nw"], [b.x2, b.y1, "ne"], [b.x1, b.y2, "sw"], [b.x2, b.y2, "se"]]) {
          element("rect", { class: "handle", x: cx - handle, y: cy - handle, width: 2 * handle, height: 2 * handle,
            "data-index": i, "data-corner": corner }, group);
        }
      }
    });
    renderTags(element("g", { class: "tags" }, svg));
    renderLists();
  }

  function changed() {
    write();
    render();
  }

  function setView(next) {
    const w = clamp(next.w, width / 32, width);
    const h = w * height / width;
    view = { x: clamp(next.x, 0, width - w), y: clamp(next.y, 0, height - h), w, h };
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    svg.dataset.zoom = (width / view.w).toFixed(3);
    if (zoomLevel) zoomLevel.textContent = `${Math.round(100 * width / view.w)} %`;
    render();
  }

  // Zoom by ``factor`` keeping the image point (cx, cy) where it is on screen.
  function zoom(factor, cx, cy) {
    const w = clamp(view.w / factor, width / 32, width);
    const k = w / view.w;
    setView({ x: cx - (cx - view.x) * k, y: cy - (cy - view.y) * k, w });
  }

  function zoomCentre() {
    if (selected >= 0) {
      const b = boxes[selected];
      return [(b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2];
    }
    return [view.x + view.w / 2, view.y + view.h / 2];
  }

  function point(event, clip = true) {
    const p = svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    return clip ? { x: clamp(q.x, 0, width), y: clamp(q.y, 0, height) } : { x: q.x, y: q.y };
  }

  function normalise(b) {
    const [x1, x2] = b.x1 <= b.x2 ? [b.x1, b.x2] : [b.x2, b.x1];
    const [y1, y2] = b.y1 <= b.y2 ? [b.y1, b.y2] : [b.y2, b.y1];
    Object.assign(b, { x1, y1, x2, y2 });
  }

  function onDown(event) {
    if (event.button === 1 || (event.button === 0 && spaceDown)) {
      event.preventDefault();
      drag = { mode: "pan", x: event.clientX, y: event.clientY, from: { ...view } };
      return;
    }
    if (event.button !== 0) return;
    event.preventDefault();
    svg.focus();
    const at = point(event);
    const target = event.target;
    if (target.dataset && target.dataset.corner) {
      selected = Number(target.dataset.index);
      drag = { mode: "resize", corner: target.dataset.corner };
    } else if (target.dataset && target.dataset.tag) {
      selected = Number(target.dataset.index);
    } else if (target.dataset && target.dataset.index !== undefined) {
      selected = Number(target.dataset.index);
      const b = boxes[selected];
      drag = { mode: "move", start: at, from: { ...b } };
    } else {
      if (!drawClass) return;
      boxes.push({ cls: drawClass, x1: at.x, y1: at.y, x2: at.x, y2: at.y, score: "", disposition: "label" });
      selected = boxes.length - 1;
      drag = { mode: "draw" };
    }
    render();
  }

  function onMove(event) {
    if (!drag) return;
    if (drag.mode === "pan") {
      const s = scale();
      setView({ ...drag.from, x: drag.from.x - (event.clientX - drag.x) / s, y: drag.from.y - (event.clientY - drag.y) / s });
      return;
    }
    const at = point(event);
    const b = boxes[selected];
    if (drag.mode === "move") {
      const w = drag.from.x2 - drag.from.x1;
      const h = drag.from.y2 - drag.from.y1;
      b.x1 = clamp(drag.from.x1 + at.x - drag.start.x, 0, width - w);
      b.y1 = clamp(drag.from.y1 + at.y - drag.start.y, 0, height - h);
      b.x2 = b.x1 + w;
      b.y2 = b.y1 + h;
    } else if (drag.mode === "resize") {
      if (drag.corner.includes("w")) b.x1 = at.x; else b.x2 = at.x;
      if (drag.corner.includes("n")) b.y1 = at.y; else b.y2 = at.y;
    } else {
      b.x2 = at.x;
      b.y2 = at.y;
    }
    b.disposition = "label";
    render();
  }

  function onUp() {
    if (!drag) return;
    const mode = drag.mode;
    drag = null;
    if (mode === "pan") return;
    const b = boxes[selected];
    normalise(b);
    if (mode === "draw" && (b.x2 - b.x1 < 2 || b.y2 - b.y1 < 2)) {
      boxes.splice(selected, 1);
      selected = -1;
    }
    changed();
  }

  function onWheel(event) {
    event.preventDefault();
    const at = point(event, false);
    zoom(event.deltaY < 0 ? 1.25 : 0.8, at.x, at.y);
  }

  function submit(buttonId) {
    const button = document.getElementById(buttonId);
    if (!button || submitting) return;
    submitting = true;
    button.form.requestSubmit(button);
  }

  function follow(linkId) {
    const link = document.getElementById(linkId);
    if (link) window.location.assign(link.href);
  }

  // Keys every page with the editor has; false when the key is not one of them.
  function pageKey(event) {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (form && key === "c") submit("confirm-button");
    else if (form && key === "f") submit("false-alarm-button");
    else if (key === "Enter") submit("save-button");
    else if (key === "n") follow("next-link");
    else if (key === "p") follow("previous-link");
    else return false;
    return true;
  }

  function editKey(event) {
    const b = selected >= 0 ? boxes[selected] : null;
    const step = event.shiftKey ? 10 : 1;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if ((event.key === "Delete" || event.key === "Backspace") && b) {
      boxes.splice(selected, 1);
      selected = Math.min(selected, boxes.length - 1);
    } else if (event.key === "Tab" && boxes.length) {
      selected = (selected + (event.shiftKey ? boxes.length - 1 : 1) + boxes.length) % boxes.length;
    } else if (event.key === "Escape") {
      selected = -1;
    } else if (/^[1-9]$/.test(event.key) && Number(event.key) <= classes.length) {
      const name = classes[Number(event.key) - 1];
      if (b) Object.assign(b, { cls: name, disposition: "label", score: "" }); else drawClass = name;
    } else if (moves[event.key] && b) {
      const [dx, dy] = moves[event.key];
      if (event.altKey) {
        b.x2 = clamp(b.x2 + dx, b.x1 + 1, width);
        b.y2 = clamp(b.y2 + dy, b.y1 + 1, height);
      } else {
        const w = b.x2 - b.x1;
        const h = b.y2 - b.y1;
        b.x1 = clamp(b.x1 + dx, 0, width - w);
        b.y1 = clamp(b.y1 + dy, 0, height - h);
        b.x2 = b.x1 + w;
        b.y2 = b.y1 + h;
      }
      b.disposition = "label";
    } else {
      return false;
    }
    changed();
    return true;
  }

  function viewKey(event) {
    if (!view) return false;
    const [cx, cy] = zoomCentre();
    const pans = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (event.key === "+" || event.key === "=") zoom(1.5, cx, cy);
    else if (event.key === "-") zoom(1 / 1.5, cx, cy);
    else if (event.key === "0") setView({ x: 0, y: 0, w: width });
    else if (pans[event.key] && selected < 0) {
      const [dx, dy] = pans[event.key];
      setView({ ...view, x: view.x + dx * view.w / 10, y: view.y + dy * view.h / 10 });
    } else return false;
    return true;
  }

  function onKey(event) {
    const tag = event.target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || event.ctrlKey || event.metaKey) return;
    if ((event.key === "Enter" || event.key === " ") && (tag === "BUTTON" || tag === "A" || tag === "SUMMARY")) return;
    if (event.key === " ") {
      spaceDown = true;
      event.preventDefault();
      return;
    }
    if (viewKey(event) || editKey(event) || pageKey(event)) event.preventDefault();
  }

  write();
  renderLists();
  if (svg && data.image) {
    const picture = new Image();
    picture.onload = () => {
      width = picture.naturalWidth;
      height = picture.naturalHeight;
      element("image", { href: data.image, x: 0, y: 0, width, height }, svg);
      setView({ x: 0, y: 0, w: width });
      svg.dataset.ready = "true";
    };
    picture.src = data.image;
    svg.addEventListener("mousedown", onDown);
    svg.addEventListener("wheel", onWheel, { passive: false });
    window.addEventListener("mousemove", onMove);
    window.addEventListener("mouseup", onUp);
    window.addEventListener("resize", render);
    for (const [id, act] of [["zoom-in", () => zoom(1.5, ...zoomCentre())], ["zoom-out", () => zoom(1 / 1.5, ...zoomCentre())],
      ["zoom-fit", () => setView({ x: 0, y: 0, w: width })]]) {
      const button = document.getElementById(id);
      if (button) button.addEventListener("click", () => { if (view) act(); });
    }
  }
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (event) => { if (event.key === " ") spaceDown = false; });
  window.addEventListener("pageshow", () => { submitting = false; });
})();

// The box editor of the review app: boxes on an SVG over the image, edited with mouse and keyboard.
// Mouse: drag on the image draws a box, drag a box moves it, drag a corner handle resizes it.
// Keys: Tab / Shift+Tab select the next / previous box, 1-9 set the class (of the selected box, or of the
// next box drawn), arrows nudge by 1 px (Shift: 10 px; Alt: resize instead of move), Delete or Backspace
// removes, Escape deselects, Enter saves (submits the form with the save button).
// The boxes are kept in image pixels and written as JSON into the form's hidden "boxes" field.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("canvas");
  const field = document.getElementById("boxes-field");
  const data = JSON.parse(document.getElementById("editor-data").textContent);
  const classes = data.classes;
  const classList = document.getElementById("class-list");
  const boxList = document.getElementById("box-list");
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

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const round = (v) => Math.round(v * 100) / 100;

  function write() {
    if (field) {
      field.value = JSON.stringify(boxes.map((b) => ({ class: b.cls, box: [round(b.x1), round(b.y1), round(b.x2), round(b.y2)] })));
    }
  }

  function element(name, attributes, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    parent.appendChild(node);
    return node;
  }

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
      if (i === selected) row.className = "selected";
      for (const text of [String(i + 1), b.cls, [b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(0)).join(", "), b.score]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      row.addEventListener("click", () => { selected = i; render(); });
      boxList.appendChild(row);
    });
  }

  function render() {
    if (!svg) return;
    svg.querySelectorAll("g.box").forEach((node) => node.remove());
    const handle = Math.max(4, Math.min(width, height) / 80);
    boxes.forEach((b, i) => {
      const group = element("g", { class: `box ${b.disposition}${i === selected ? " selected" : ""}` }, svg);
      element("rect", { x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, "data-index": i,
        "vector-effect": "non-scaling-stroke" }, group);
      const label = element("text", { x: b.x1, y: Math.max(b.y1 - 3, handle * 2), "font-size": handle * 2.6 }, group);
      label.textContent = `${i + 1} ${b.cls}${b.score ? " " + b.score : ""}`;
      if (i === selected) {
        for (const [cx, cy, corner] of [[b.x1, b.y1, "nw"], [b.x2, b.y1, "ne"], [b.x1, b.y2, "sw"], [b.x2, b.y2, "se"]]) {
          element("rect", { class: "handle", x: cx - handle, y: cy - handle, width: 2 * handle, height: 2 * handle,
            "data-index": i, "data-corner": corner }, group);
        }
      }
    });
    renderLists();
  }

  function changed() {
    write();
    render();
  }

  function point(event) {
    const p = svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    return { x: clamp(q.x, 0, width), y: clamp(q.y, 0, height) };
  }

  function normalise(b) {
    const [x1, x2] = b.x1 <= b.x2 ? [b.x1, b.x2] : [b.x2, b.x1];
    const [y1, y2] = b.y1 <= b.y2 ? [b.y1, b.y2] : [b.y2, b.y1];
    Object.assign(b, { x1, y1, x2, y2 });
  }

  function onDown(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    svg.focus();
    const at = point(event);
    const target = event.target;
    if (target.dataset && target.dataset.corner) {
      selected = Number(target.dataset.index);
      drag = { mode: "resize", corner: target.dataset.corner };
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
    const b = boxes[selected];
    normalise(b);
    if (drag.mode === "draw" && (b.x2 - b.x1 < 2 || b.y2 - b.y1 < 2)) {
      boxes.splice(selected, 1);
      selected = -1;
    }
    drag = null;
    changed();
  }

  function onKey(event) {
    const tag = event.target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || tag === "BUTTON") return;
    const b = selected >= 0 ? boxes[selected] : null;
    const step = event.shiftKey ? 10 : 1;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key === "Enter") {
      const save = document.getElementById("save-button");
      if (save) save.form.requestSubmit(save);
    } else if ((event.key === "Delete" || event.key === "Backspace") && b) {
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
      return;
    }
    event.preventDefault();
    changed();
  }

  write();
  renderLists();
  if (svg && data.image) {
    const picture = new Image();
    picture.onload = () => {
      width = picture.naturalWidth;
      height = picture.naturalHeight;
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      element("image", { href: data.image, x: 0, y: 0, width, height }, svg);
      svg.dataset.ready = "true";
      render();
    };
    picture.src = data.image;
    svg.addEventListener("mousedown", onDown);
    window.addEventListener("mousemove", onMove);
    window.addEventListener("mouseup", onUp);
  }
  document.addEventListener("keydown", onKey);
})();

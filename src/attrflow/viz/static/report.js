// attrflow report: the interactive attention / attribution heatmap.
// Reads the JSON block #attrflow-data; writes token text only through textContent and canvas fillText.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("attrflow-data").textContent);
  var tokens = DATA.tokens;
  var n = tokens.length;
  var decoded = {};

  function halfToFloat(h) {
    var sign = h & 0x8000 ? -1 : 1;
    var exponent = (h >> 10) & 0x1f;
    var fraction = h & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  // matrices are stored per (layer row, head) divided by their max |value| (in `scales`), as float16
  function values(kind) {
    if (!decoded[kind]) {
      var binary = atob(DATA.matrices[kind].data);
      var count = binary.length >> 1;
      var out = new Float32Array(count);
      for (var k = 0; k < count; k++) {
        out[k] = halfToFloat(binary.charCodeAt(2 * k) | (binary.charCodeAt(2 * k + 1) << 8));
      }
      decoded[kind] = out;
    }
    return decoded[kind];
  }

  function matrix(kind, row, head) {
    var spec = DATA.matrices[kind];
    var all = values(kind);
    var size = n * n;
    var out = new Float32Array(size);
    var heads = [];
    if (head === "mean") {
      for (var h = 0; h < spec.heads; h++) heads.push(h);  // one "head" when only the mean was embedded
    } else {
      heads.push(Number(head));
    }
    heads.forEach(function (h) {
      var scale = spec.scales[row * spec.heads + h] / heads.length;
      var offset = (row * spec.heads + h) * size;
      for (var k = 0; k < size; k++) out[k] += all[offset + k] * scale;
    });
    return out;
  }

  var kindSelect = document.getElementById("hm-kind");
  var layerSelect = document.getElementById("hm-layer");
  var headSelect = document.getElementById("hm-head");
  var canvas = document.getElementById("hm-canvas");
  var caption = document.getElementById("hm-caption");
  var readout = document.getElementById("hm-readout");
  if (!canvas || !canvas.getContext) return;
  var context = canvas.getContext("2d");

  var cell = Math.max(3, Math.min(18, Math.floor(640 / Math.max(n, 1))));
  var margin = 100;
  var labelEvery = Math.max(1, Math.ceil(9 / cell));
  canvas.width = margin + n * cell + 8;
  canvas.height = margin + n * cell + 8;
  canvas.setAttribute("data-cell", String(cell));
  canvas.setAttribute("data-margin", String(margin));
  var current = null;

  function option(select, value, text) {
    var element = document.createElement("option");
    element.value = String(value);
    element.textContent = text;
    select.appendChild(element);
  }

  function short(text) {
    return text.length > 14 ? text.slice(0, 13) + "\u2026" : text;
  }

  function colour(value, vmax) {
    if (!(vmax > 0) || !isFinite(value)) return "rgb(255,255,255)";
    var t = Math.min(Math.abs(value) / vmax, 1);
    var target = value >= 0 ? [214, 39, 40] : [31, 119, 180];
    var mix = target.map(function (c) { return Math.round(255 + (c - 255) * t); });
    return "rgb(" + mix.join(",") + ")";
  }

  function fillLayers() {
    var spec = DATA.matrices[kindSelect.value];
    var previous = layerSelect.options.length ? layerSelect.options[layerSelect.selectedIndex].textContent : null;
    while (layerSelect.firstChild) layerSelect.removeChild(layerSelect.firstChild);
    spec.layers.forEach(function (layer, row) { option(layerSelect, row, "layer " + layer); });
    var keep = -1;
    for (var k = 0; k < layerSelect.options.length; k++) {
      if (layerSelect.options[k].textContent === previous) keep = k;
    }
    layerSelect.selectedIndex = keep >= 0 ? keep : initialRow(kindSelect.value);
  }

  // query rows whose |values| (summed over heads) reach 1e-3 of the largest row: the rows that carry anything
  function activeRows(kind, row, head) {
    var m = matrix(kind, row, head);
    var mass = [];
    var largest = 0;
    for (var q = 0; q < n; q++) {
      var total = 0;
      for (var key = 0; key < n; key++) total += Math.abs(m[q * n + key]);
      mass.push(total);
      largest = Math.max(largest, total);
    }
    var active = [];
    mass.forEach(function (total, q) { if (largest > 0 && total >= 1e-3 * largest) active.push(q); });
    return active;
  }

  // open on the highest layer where more than one query row is non-zero: the top layer of an attribution holds
  // only the explained position's row (nothing else reaches the output), which shows little
  function initialRow(kind) {
    var spec = DATA.matrices[kind];
    for (var row = spec.layers.length - 1; row >= 0; row--) {
      if (activeRows(kind, row, "mean").length > 1) return row;
    }
    return spec.layers.length - 1;
  }

  function draw() {
    var kind = kindSelect.value;
    var row = Number(layerSelect.value);
    var head = headSelect.value;
    var spec = DATA.matrices[kind];
    var m = matrix(kind, row, head);
    var vmax = 0;
    for (var k = 0; k < m.length; k++) vmax = Math.max(vmax, Math.abs(m[k]));
    current = { kind: kind, layer: spec.layers[row], head: head, m: m };

    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#333";
    context.font = Math.min(12, Math.max(8, cell)) + "px sans-serif";
    for (var i = 0; i < n; i += labelEvery) {
      context.textAlign = "right";
      context.fillText(short(tokens[i]), margin - 4, margin + (i + 0.5) * cell + 4);
      context.save();
      context.translate(margin + (i + 0.5) * cell + 3, margin - 4);
      context.rotate(-Math.PI / 3);
      context.textAlign = "left";
      context.fillText(short(tokens[i]), 0, 0);
      context.restore();
    }
    for (var q = 0; q < n; q++) {
      for (var key = 0; key < n; key++) {
        context.fillStyle = colour(m[q * n + key], vmax);
        context.fillRect(margin + key * cell, margin + q * cell, cell, cell);
      }
    }
    context.strokeStyle = "#999";
    context.strokeRect(margin - 0.5, margin - 0.5, n * cell + 1, n * cell + 1);

    canvas.setAttribute("data-kind", kind);
    canvas.setAttribute("data-layer", String(spec.layers[row]));
    canvas.setAttribute("data-head", head);
    var active = activeRows(kind, row, head);
    var why = "";
    if (active.length === 1) {
      var q = active[0];
      why = ". Only the row of \u201c" + tokens[q] + "\u201d is non-zero" +
        (kind === "attribution" && q === DATA.outputPosition
          ? ": the prediction reads this position's output, and in this layer nothing else reaches it"
          : "");
    }
    caption.textContent = (kind === "attribution" ? "attribution" : "attention probabilities") +
      ", layer " + spec.layers[row] + ", " + (head === "mean" ? "mean over heads" : "head " + head) +
      "; rows: query (who attends), columns: key (attended to); colour scale \u00b1" + vmax.toPrecision(3) +
      (kind === "attribution" ? " (red positive, blue negative)" : "") + why;
    readout.textContent = "\u00a0";
  }

  function select(kind, layer, head) {
    kindSelect.value = kind;
    fillLayers();
    var rows = DATA.matrices[kind].layers;
    var row = rows.indexOf(layer);
    if (row >= 0) layerSelect.value = String(row);
    headSelect.value = DATA.perHead ? String(head) : "mean";
    draw();
  }

  Object.keys(DATA.matrices).forEach(function (kind) {
    if (DATA.matrices[kind].layers.length) option(kindSelect, kind, kind === "attribution" ? "attribution" : "attention");
  });
  option(headSelect, "mean", "mean over heads");
  if (DATA.perHead) {
    for (var h = 0; h < DATA.heads; h++) option(headSelect, h, "head " + h);
  } else {
    headSelect.disabled = true;
    headSelect.title = "this report embeds only the mean over heads (render with heatmap_heads='all' for every head)";
  }
  fillLayers();

  kindSelect.addEventListener("change", function () { fillLayers(); draw(); });
  layerSelect.addEventListener("change", draw);
  headSelect.addEventListener("change", draw);
  canvas.addEventListener("mousemove", function (event) {
    if (!current) return;
    var box = canvas.getBoundingClientRect();
    var x = (event.clientX - box.left) * (canvas.width / box.width) - margin;
    var y = (event.clientY - box.top) * (canvas.height / box.height) - margin;
    var key = Math.floor(x / cell);
    var q = Math.floor(y / cell);
    if (q < 0 || key < 0 || q >= n || key >= n) return;
    readout.textContent = "query " + q + " \u201c" + tokens[q] + "\u201d \u2192 key " + key + " \u201c" + tokens[key] +
      "\u201d: " + current.m[q * n + key].toPrecision(4);
  });
  Array.prototype.forEach.call(document.querySelectorAll("#head-scores td[data-head]"), function (td) {
    td.addEventListener("click", function () {
      select("attribution", Number(td.getAttribute("data-layer")), td.getAttribute("data-head"));
    });
  });
  draw();
})();

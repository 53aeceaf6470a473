// attrflow explore: the explorer page, served by `attrflow explore` or inlined by .explore() around one result.
// It draws from data only (the JSON API, or the JSON block #attrflow-data) and never names a method: every view is
// built from what the method registry and the result contain. Token text reaches the page only as text
// (textContent, SVG text nodes, canvas fillText), never as markup; no style attribute is written (CSSOM only).
(function () {
  "use strict";

  var ROOT = document.getElementById("explore");
  if (!ROOT) return;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var MAX_EDGES = 4000;
  var HISTORY = 8;

  // ------------------------------------------------------------------ small helpers
  function $(id) { return document.getElementById(id); }

  function setAttrs(node, attrs) {
    if (!attrs) return node;
    Object.keys(attrs).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (/^on/i.test(key) || key === "style") throw new Error("refusing attribute " + key);
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    return node;
  }

  function h(tag, attrs, children) {
    var node = setAttrs(document.createElement(tag), attrs);
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function s(tag, attrs) { return setAttrs(document.createElementNS(SVG_NS, tag), attrs); }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function fmt(value, digits) {
    digits = digits || 3;
    if (value === null || value === undefined || !isFinite(value)) return "–";
    var size = Math.abs(value);
    if (size !== 0 && (size < 1e-3 || size >= 1e5)) return value.toExponential(digits - 1);
    return String(Number(value.toPrecision(digits)));
  }

  function rgba(value, scale) {
    if (!(scale > 0) || !isFinite(value)) return "rgba(0,0,0,0)";
    var alpha = (Math.min(Math.abs(value) / scale, 1) * 0.85).toFixed(3);
    return value >= 0 ? "rgba(214,39,40," + alpha + ")" : "rgba(31,119,180," + alpha + ")";
  }

  // an opaque colour (white to red or blue), for canvas pixels and exported figures
  function mix(value, scale) {
    if (!(scale > 0) || !isFinite(value)) return [255, 255, 255];
    var t = Math.min(Math.abs(value) / scale, 1);
    var target = value >= 0 ? [214, 39, 40] : [31, 119, 180];
    return target.map(function (c) { return Math.round(255 + (c - 255) * t); });
  }

  function rgb(colour) { return "rgb(" + colour.join(",") + ")"; }

  function short(text, size) {
    size = size || 14;
    return text.length > size ? text.slice(0, size - 1) + "\u2026" : text;
  }

  function scaleOf(values, special) {
    var best = 0, any = 0;
    for (var i = 0; i < values.length; i++) {
      var v = Math.abs(values[i]);
      if (!isFinite(v)) continue;
      if (v > any) any = v;
      if (!(special && special[i]) && v > best) best = v;
    }
    return best > 0 ? best : any;
  }

  function download(name, href) {
    var link = h("a", { href: href, download: name });
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    setTimeout(function () {
      link.remove();
      if (href.indexOf("blob:") === 0) URL.revokeObjectURL(href);
    }, 2000);
  }

  function downloadText(name, text, type) {
    download(name, URL.createObjectURL(new Blob([text], { type: type })));
  }

  // ------------------------------------------------------------------ arrays from the API's compact blocks
  var HALF = null;
  function halfTable() {
    if (HALF) return HALF;
    HALF = new Float32Array(65536);
    for (var bits = 0; bits < 65536; bits++) {
      var sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
      if (exponent === 0) HALF[bits] = sign * Math.pow(2, -14) * (fraction / 1024);
      else if (exponent === 31) HALF[bits] = fraction ? NaN : sign * Infinity;
      else HALF[bits] = sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
    }
    return HALF;
  }

  var decodedBlocks = new WeakMap();
  function decode(block) {
    if (!block) return null;
    if (decodedBlocks.has(block)) return decodedBlocks.get(block);
    var out;
    if (Array.isArray(block)) {
      var shape = [], probe = block;
      while (Array.isArray(probe)) { shape.push(probe.length); probe = probe[0]; }
      var flat = [];
      (function walk(items) {
        if (!Array.isArray(items)) { flat.push(items === null ? 0 : items); return; }
        for (var i = 0; i < items.length; i++) walk(items[i]);
      })(block);
      out = { shape: shape, values: Float32Array.from(flat) };
    } else {
      var binary = atob(block.data);
      var bytes = new Uint8Array(binary.length);
      for (var k = 0; k < binary.length; k++) bytes[k] = binary.charCodeAt(k);
      var values;
      if (block.dtype === "float32") {
        values = new Float32Array(bytes.buffer);
      } else if (block.dtype === "float64") {
        values = Float32Array.from(new Float64Array(bytes.buffer));
      } else {
        var half = new Uint16Array(bytes.buffer), table = halfTable();
        values = new Float32Array(half.length);
        var scales = block.scales || [1];
        var per = Math.max(1, Math.floor(half.length / Math.max(scales.length, 1)));
        for (var j = 0; j < half.length; j++) values[j] = table[half[j]] * scales[Math.floor(j / per)];
      }
      out = { shape: block.shape, values: values };
    }
    decodedBlocks.set(block, out);
    return out;
  }

  function slice(decoded, index, size) { return decoded.values.subarray(index * size, (index + 1) * size); }

  // ------------------------------------------------------------------ state
  var state = {
    inline: false,
    models: [],
    methods: [],
    result: null,
    history: [],
    selection: null,   // {row: null|r, token: j}: a token column (row null) or one graph node
    root: null,        // {row, token} or null: the graph shows only what reaches it
    blank: {},
    controller: null,
    job: null,
    sources: {},
    generation: 0,
  };

  function layerWord(layer) { return "layer " + layer; }

  // ------------------------------------------------------------------ API
  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" } }).then(function (response) {
      return response.json().catch(function () { return { error: response.statusText }; }).then(function (body) {
        if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
        return body;
      });
    });
  }

  async function explainStream(body, onProgress, signal) {
    var response = await fetch("api/explain", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/x-ndjson" },
      body: JSON.stringify(body),
      signal: signal,
    });
    if (!response.ok) {
      var failure = await response.json().catch(function () { return {}; });
      throw new Error(failure.error || "HTTP " + response.status);
    }
    var reader = response.body.getReader(), decoder = new TextDecoder(), parts = [], result = null;
    function handle(line) {
      if (!line) return;
      var message = JSON.parse(line);
      if (message.event === "job") state.job = message.id;
      else if (message.event === "progress") onProgress(message);
      else if (message.event === "error") throw new Error(message.error);
      else if (message.event === "result") result = message.data;
    }
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      var text = decoder.decode(chunk.value, { stream: true }), start = 0, at;
      while ((at = text.indexOf("\n", start)) >= 0) {
        parts.push(text.slice(start, at));
        handle(parts.join(""));
        parts = [];
        start = at + 1;
      }
      parts.push(text.slice(start));
    }
    handle(parts.join(""));
    if (!result) throw new Error("the server closed the connection before the result");
    return result;
  }

  // ------------------------------------------------------------------ input controls (served mode)
  function currentModel() {
    var name = $("x-model").value;
    return state.models.filter(function (m) { return m.name === name; })[0] || state.models[0];
  }

  function fillModels() {
    var select = $("x-model");
    clear(select);
    state.models.forEach(function (model) {
      select.appendChild(h("option", {
        value: model.name,
        text: model.name + " (" + model.architecture + ", " + model.layers + "\u00d7" + model.heads + ")",
      }));
    });
  }

  function fillMethods() {
    var box = $("x-methods"), model = currentModel(), checked = {};
    box.querySelectorAll("input[type=checkbox]").forEach(function (input) { checked[input.value] = input.checked; });
    var first = Object.keys(checked).length === 0;
    box.querySelectorAll("label").forEach(function (label) { label.remove(); });
    state.methods.forEach(function (method) {
      var reason = model && model.unsupported ? model.unsupported[method.name] : null;
      var input = h("input", { type: "checkbox", value: method.name, "data-method": method.name });
      input.checked = !reason && (first ? method["default"] : !!checked[method.name]);
      input.disabled = !!reason;
      var title = method.description + (method.paper ? " \u2014 " + method.paper : "") +
        (reason ? "\n(cannot explain this model: " + reason + ")" : "");
      box.appendChild(h("label", { title: title, class: reason ? "unsupported" : null }, [
        input, document.createTextNode(" " + method.name + " "), h("span", { class: "cost", text: method.cost }),
      ]));
    });
  }

  function fillTargets() {
    var select = $("x-target"), model = currentModel(), token = $("x-target-token");
    clear(select);
    if (!model) return;
    if (model.task === "causal-lm") {
      select.appendChild(h("option", { value: "", text: "predicted next token" }));
      select.appendChild(h("option", { value: "token", text: "this next token:" }));
    } else {
      select.appendChild(h("option", { value: "", text: "predicted class" }));
      (model.labels || []).forEach(function (label, i) {
        select.appendChild(h("option", { value: String(i), text: label + " (" + i + ")" }));
      });
    }
    token.hidden = select.value !== "token";
  }

  function requestBody() {
    var model = currentModel(), target = $("x-target").value, pair = $("x-text-pair").value;
    var methods = [];
    $("x-methods").querySelectorAll("input[type=checkbox]").forEach(function (input) {
      if (input.checked && !input.disabled) methods.push(input.value);
    });
    var chosen = null;
    if (target === "token") chosen = $("x-target-token").value.trim() || null;
    else if (target !== "") chosen = Number(target);
    return {
      text: $("x-text").value,
      text_pair: pair.trim() ? pair : null,
      model: model ? model.name : null,
      methods: methods,
      target: chosen,
      truncation: $("x-truncate").checked,
      heads: "auto",
      encoding: "auto",
    };
  }

  function showError(message) {
    var box = $("x-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function setBusy(busy) {
    $("x-explain").disabled = busy;
    $("x-whatif-run").disabled = busy;
    $("x-cancel").hidden = !busy;
    if (!busy) $("x-progress").hidden = true;
    ROOT.dataset.busy = busy ? "1" : "0";
  }

  async function run(body) {
    if (state.controller) state.controller.abort();
    var controller = new AbortController();
    state.controller = controller;
    state.job = null;
    showError("");
    setBusy(true);
    $("x-status").textContent = "explaining\u2026";
    var shown = setTimeout(function () { $("x-progress").hidden = false; }, 200);
    try {
      var result = await explainStream(body, function (message) {
        var bar = $("x-progress");
        if (message.total) { bar.max = message.total; bar.value = message.done; }
        $("x-status").textContent = message.stage ? "computing " + message.stage + " (" + (message.done + 1) +
          " of " + message.total + ")\u2026" : "explaining\u2026";
      }, controller.signal);
      $("x-status").textContent = "done in " + fmt(result.seconds, 2) + " s";
      return result;
    } catch (error) {
      if (error && error.name === "AbortError") $("x-status").textContent = "cancelled";
      else { $("x-status").textContent = ""; showError(error.message); }
      return null;
    } finally {
      clearTimeout(shown);
      if (state.controller === controller) { state.controller = null; setBusy(false); }
    }
  }

  function cancel() {
    if (state.job) fetch("api/jobs/" + encodeURIComponent(state.job), { method: "DELETE" }).catch(function () {});
    if (state.controller) state.controller.abort();
  }

  async function explainClicked() {
    ROOT.dataset.clickedAt = String(performance.now());
    var result = await run(requestBody());
    if (result) show(result, true);
  }

  // ------------------------------------------------------------------ showing a result
  function show(result, remember) {
    state.result = result;
    state.selection = null;
    state.blank = {};
    state.sources = {};
    var n = result.tokens.length;
    state.root = result.output_position >= 0 && result.output_position < n ? { row: -1, token: result.output_position } : null;
    $("x-views").hidden = false;
    renderPrediction();
    fillScoreView();
    renderScores();
    fillGraphSources();
    drawGraph();
    fillHeatmapKinds();
    drawHeatmap();
    renderHeadGrid();
    drawTree();
    renderSettings();
    setupWhatIf();
    if (remember) remember_(result);
    renderHistory();
    state.generation += 1;
    ROOT.dataset.state = "ready";
    ROOT.dataset.generation = String(state.generation);
    var generation = state.generation;
    requestAnimationFrame(function () {
      setTimeout(function () {
        if (generation !== state.generation) return;
        ROOT.dataset.drawnAt = String(performance.now());
        ROOT.dataset.drawnGeneration = String(generation);
      }, 0);
    });
  }

  function outputLabel(result, index) {
    var outputs = result.outputs || [];
    for (var i = 0; i < outputs.length; i++) if (outputs[i].index === index && outputs[i].label !== null) return outputs[i].label;
    if (result.target === index && result.target_label) return result.target_label;
    if (result.predicted === index && result.predicted_label) return result.predicted_label;
    var model = state.models.filter(function (m) { return m.name === result.model; })[0];
    if (model && model.labels && model.labels[index] !== undefined) return model.labels[index];
    return "#" + index;
  }

  function probabilityOf(result, index) {
    var outputs = result.outputs || [];
    for (var i = 0; i < outputs.length; i++) if (outputs[i].index === index) return outputs[i].probability;
    if (result.target === index || result.target === undefined) return result.probability;
    return null;
  }

  function renderPrediction() {
    var r = state.result, box = $("x-prediction"), outputs = $("x-outputs");
    clear(box);
    clear(outputs);
    var predicted = r.predicted;
    box.appendChild(h("strong", { text: outputLabel(r, predicted) }));
    box.appendChild(document.createTextNode("  p = " + fmt(probabilityOf(r, predicted), 4)));
    if (r.target !== undefined && r.target !== null && r.target !== predicted) {
      box.appendChild(document.createTextNode("  \u00b7 explained: "));
      box.appendChild(h("strong", { text: outputLabel(r, r.target) }));
      box.appendChild(document.createTextNode("  p = " + fmt(probabilityOf(r, r.target), 4)));
    }
    var facts = [r.tokens.length + " tokens"];
    if (r.model) facts.unshift("model " + r.model);
    box.appendChild(h("div", { class: "note", text: facts.join(" \u00b7 ") }));
    if (r.truncated) box.appendChild(h("div", { class: "warning", text: "The text was cut to the model's maximum length." }));
    (r.outputs || []).slice(0, 5).forEach(function (output) {
      var bar = h("div", { class: "bar" });
      bar.style.width = Math.max(1, output.probability * 100).toFixed(1) + "%";
      outputs.appendChild(h("span", { class: "label", text: output.label === null ? "#" + output.index : output.label }));
      outputs.appendChild(h("div", {}, [bar]));
      outputs.appendChild(h("span", { text: fmt(output.probability, 3) }));
    });
  }

  // ------------------------------------------------------------------ token scores, aligned rows
  function methodNames(result) { return Object.keys(result.methods || {}); }

  function layersOfScores(result) {
    var seen = {};
    methodNames(result).forEach(function (name) {
      var entry = result.methods[name];
      if (entry.per_layer) entry.layers.forEach(function (layer) { seen[layer] = true; });
    });
    return Object.keys(seen).map(Number).sort(function (a, b) { return a - b; });
  }

  function fillScoreView() {
    var select = $("x-score-view");
    clear(select);
    select.appendChild(h("option", { value: "overall", text: "each method's overall scores" }));
    layersOfScores(state.result).forEach(function (layer) {
      select.appendChild(h("option", { value: String(layer), text: "per-layer methods at " + layerWord(layer) }));
    });
  }

  function rowValues(entry, view) {
    if (view === "overall" || !entry.per_layer) return { values: entry.overall, note: entry.overall_description };
    var row = entry.layers.indexOf(Number(view));
    if (row < 0) return { values: entry.overall, note: "not computed at " + layerWord(view) + "; overall shown" };
    return { values: entry.scores[row], note: entry.description + "; " + layerWord(view) };
  }

  function renderScores() {
    var r = state.result, grid = $("x-score-grid"), n = r.tokens.length, view = $("x-score-view").value;
    var special = r.special_mask || [];
    clear(grid);
    grid.style.gridTemplateColumns = "max-content repeat(" + n + ", max-content)";
    grid.appendChild(h("div", { class: "name", text: "token" }));
    r.tokens.forEach(function (token, i) {
      grid.appendChild(h("button", {
        type: "button", class: "chip" + (special[i] ? " special" : ""), "data-testid": "token", "data-index": i,
        title: i + ": " + token, text: token,
      }));
    });
    methodNames(r).forEach(function (name) {
      var entry = r.methods[name], picked = rowValues(entry, view), values = picked.values;
      var scale = scaleOf(values, special);
      grid.appendChild(h("div", { class: "name", title: picked.note, "data-method": name, text: name }));
      r.tokens.forEach(function (token, i) {
        var cell = h("span", {
          class: "cell" + (special[i] ? " special" : ""), "data-method": name, "data-index": i,
          title: name + ": " + token + " = " + fmt(values[i], 4), text: token,
        });
        cell.style.background = rgba(values[i], scale);
        grid.appendChild(cell);
      });
    });
    markSelection();
  }

  function markSelection() {
    var token = state.selection ? state.selection.token : -1;
    document.querySelectorAll("#x-score-grid [data-index]").forEach(function (node) {
      node.classList.toggle("sel", Number(node.dataset.index) === token);
    });
  }

  // ------------------------------------------------------------------ matrices: methods' and the result's
  // a source is "m:<method>" (the method's per-layer matrices) or "r:<kind>" (the result's attention/attribution)
  function sourceSpecs(result) {
    var specs = [];
    methodNames(result).forEach(function (name) {
      var entry = result.methods[name];
      if (entry.matrices) specs.push({ key: "m:" + name, label: name, perHead: false });
    });
    Object.keys(result.matrices || {}).forEach(function (kind) {
      specs.push({ key: "r:" + kind, label: kind + " (per head)", perHead: true });
    });
    return specs;
  }

  function headsOf(result, key) {
    if (key.indexOf("r:") !== 0) return 0;
    return result.matrices[key.slice(2)].heads;
  }

  function canFetch() { return !state.inline && state.result && state.result.id; }

  // {layers: [model layer], mats: [Float32Array n*n], n}; head: "mean" or a head index (result sources)
  async function matrices(key, head) {
    var r = state.result, n = r.tokens.length, size = n * n, cacheKey = key + "|" + head;
    if (state.sources[cacheKey]) return state.sources[cacheKey];
    var out;
    if (key.indexOf("m:") === 0) {
      var entry = r.methods[key.slice(2)], decoded = decode(entry.matrices), count = decoded.shape[0];
      var layers = entry.layers.length === count ? entry.layers : Array.from({ length: count }, function (_, i) { return i; });
      out = { layers: layers, mats: layers.map(function (_, k) { return slice(decoded, k, size); }), n: n };
    } else {
      var kind = key.slice(2), spec = r.matrices[kind], block = decode(spec.data), H = spec.per_head ? spec.heads : 1;
      var mats = [];
      if (head === "mean") {
        spec.layers.forEach(function (_, k) {
          if (H === 1) { mats.push(slice(block, k, size)); return; }
          var mean = new Float32Array(size);
          for (var hd = 0; hd < H; hd++) {
            var one = slice(block, k * H + hd, size);
            for (var q = 0; q < size; q++) mean[q] += one[q] / H;
          }
          mats.push(mean);
        });
      } else if (spec.per_head) {
        spec.layers.forEach(function (_, k) { mats.push(slice(block, k * H + Number(head), size)); });
      } else if (canFetch()) {
        var fetched = await getJSON("api/heads/" + encodeURIComponent(r.id) + "?kind=" + encodeURIComponent(kind) +
          "&head=" + Number(head) + "&encoding=float16");
        var data = decode(fetched.data);
        spec.layers.forEach(function (_, k) { mats.push(slice(data, k, size)); });
      } else {
        throw new Error("per-head matrices are not embedded for an input this long");
      }
      out = { layers: spec.layers, mats: mats, n: n };
    }
    state.sources[cacheKey] = out;
    return out;
  }

  // ------------------------------------------------------------------ the flow graph: tokens × layers
  function fillGraphSources() {
    var select = $("x-graph-source"), previous = select.value;
    clear(select);
    sourceSpecs(state.result).forEach(function (spec) {
      select.appendChild(h("option", { value: spec.key, text: spec.label }));
    });
    if (previous && select.querySelector('option[value="' + CSS.escape(previous) + '"]')) select.value = previous;
    else {
      // first choice: a method that explains the model's output (the registry says which), else the first listed
      var reads = {};
      state.methods.forEach(function (method) { reads[method.name] = method.reads_output; });
      var explaining = sourceSpecs(state.result).filter(function (spec) { return reads[spec.key.slice(2)] && spec.key.indexOf("m:") === 0; })[0];
      if (explaining) select.value = explaining.key;
    }
    fillGraphHeads();
  }

  function fillGraphHeads() {
    var select = $("x-graph-head"), heads = headsOf(state.result, $("x-graph-source").value);
    var spec = heads ? state.result.matrices[$("x-graph-source").value.slice(2)] : null;
    clear(select);
    select.appendChild(h("option", { value: "mean", text: heads ? "mean of heads" : "fused by the method" }));
    for (var hd = 0; hd < heads; hd++) {
      var option = h("option", { value: String(hd), text: "head " + hd });
      option.disabled = !(spec.per_head || canFetch());
      select.appendChild(option);
    }
    select.disabled = !heads;
  }

  // every nonzero entry of a source's matrices, bucketed by |weight| / its layer's largest into 1025 bins (a
  // counting sort, once per source): a threshold then costs only the edges it keeps, also at 512 tokens
  function ranked(source) {
    if (source.ranked) return source.ranked;
    var size = source.n * source.n, scales = [], signed = false, counts = new Uint32Array(1026);
    source.mats.forEach(function (mat) {
      var best = 0;
      for (var q = 0; q < mat.length; q++) { var a = Math.abs(mat[q]); if (a > best) best = a; if (mat[q] < 0) signed = true; }
      scales.push(best);
    });
    function bin(k, q) { return Math.min(1024, Math.floor(Math.abs(source.mats[k][q]) / scales[k] * 1024)); }
    source.mats.forEach(function (mat, k) {
      if (!(scales[k] > 0)) return;
      for (var q = 0; q < mat.length; q++) if (mat[q] !== 0) counts[bin(k, q) + 1] += 1;
    });
    for (var c = 1; c < counts.length; c++) counts[c] += counts[c - 1];
    var order = new Uint32Array(counts[1025]), fill = counts.slice(0, 1025);
    source.mats.forEach(function (mat, k) {
      if (!(scales[k] > 0)) return;
      for (var q = 0; q < mat.length; q++) if (mat[q] !== 0) order[fill[bin(k, q)]++] = k * size + q;
    });
    source.ranked = { order: order, starts: counts, scales: scales, signed: signed };
    return source.ranked;
  }

  function graphEdges(source, threshold) {
    var n = source.n, size = n * n, K = source.mats.length, rank = ranked(source), edges = [], total = 0;
    var lowest = Math.min(1024, Math.floor(threshold * 1024)), cutoff = threshold;
    function take(b, limit) {
      for (var p = rank.starts[b]; p < rank.starts[b + 1] && edges.length < limit; p++) {
        var at = rank.order[p], k = Math.floor(at / size), q = at - k * size, value = source.mats[k][q];
        var w = Math.abs(value) / rank.scales[k];
        if (w >= threshold) edges.push({ k: k, i: Math.floor(q / n), j: q % n, value: value, w: w });
      }
    }
    for (var b = 1024; b >= lowest; b--) {
      var count = rank.starts[b + 1] - rank.starts[b];
      if (b === lowest) {
        for (var p = rank.starts[b]; p < rank.starts[b + 1]; p++) {
          var at = rank.order[p], k = Math.floor(at / size);
          if (Math.abs(source.mats[k][at - k * size]) / rank.scales[k] >= threshold) total += 1;
        }
      } else {
        total += count;
      }
    }
    // the strongest first, whole bins at a time, until MAX_EDGES would be passed
    for (var top = 1024; top >= lowest; top--) {
      var inBin = rank.starts[top + 1] - rank.starts[top];
      if (edges.length && edges.length + inBin > MAX_EDGES) { cutoff = Math.max(threshold, (top + 1) / 1024); break; }
      take(top, MAX_EDGES);
    }
    return { edges: edges, total: total, cutoff: cutoff, signed: rank.signed, K: K };
  }

  // nodes are (row, token); row 0 is the input, row k+1 the output of matrix layer k
  function reach(edges, starts, upward) {
    var n = state.result.tokens.length, seen = {}, stack = [], hit = {};
    var index = {};
    edges.forEach(function (edge, e) {
      var from = upward ? edge.k * n + edge.j : (edge.k + 1) * n + edge.i;
      (index[from] = index[from] || []).push(e);
    });
    starts.forEach(function (node) { seen[node] = true; stack.push(node); });
    while (stack.length) {
      var node = stack.pop();
      (index[node] || []).forEach(function (e) {
        hit[e] = true;
        var edge = edges[e], next = upward ? (edge.k + 1) * n + edge.i : edge.k * n + edge.j;
        if (!seen[next]) { seen[next] = true; stack.push(next); }
      });
    }
    return { nodes: seen, edges: hit };
  }

  var graphState = null;

  async function drawGraph() {
    var r = state.result, key = $("x-graph-source").value, head = $("x-graph-head").value || "mean";
    var svg = $("x-graph-svg"), caption = $("x-graph-caption");
    clear(svg);
    if (!key) {
      caption.textContent = "No method with per-layer token-to-token matrices ran on this input.";
      svg.setAttribute("width", "10");
      svg.setAttribute("height", "10");
      graphState = null;
      return;
    }
    var source;
    try {
      source = await matrices(key, head);
    } catch (error) {
      caption.textContent = String(error.message || error);
      return;
    }
    if (state.result !== r) return;
    var threshold = Number($("x-threshold").value);
    var found = graphEdges(source, threshold), n = source.n, K = found.K, rows = K + 1;
    var root = state.root ? { row: state.root.row < 0 ? K : state.root.row, token: state.root.token } : null;
    var edges = found.edges;
    if (root) {
      var toRoot = reach(edges, [root.row * n + root.token], false);
      edges = edges.filter(function (_, e) { return toRoot.edges[e]; });
    }
    var colW = Math.max(14, Math.min(64, Math.floor(1000 / Math.max(n, 1))));
    var rowH = Math.max(40, Math.min(80, Math.floor(560 / Math.max(K, 1))));
    var left = 96, top = 18, labelH = colW < 40 ? 110 : 40;
    var width = left + n * colW + 16, height = top + K * rowH + 14 + labelH;
    setAttrs(svg, { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    function x(j) { return left + (j + 0.5) * colW; }
    function y(row) { return top + (K - row) * rowH; }
    svg.appendChild(s("rect", { x: 0, y: 0, width: width, height: height, fill: "#ffffff" }));
    for (var row = 0; row < rows; row++) {
      svg.appendChild(s("text", {
        x: 6, y: y(row) + 4, "font-size": 11, fill: "#555",
        text: row === 0 ? "input" : layerWord(source.layers[row - 1]),
      }));
    }
    var edgeGroup = s("g", { class: "edges" }), lines = [];
    edges.forEach(function (edge) {
      var line = s("line", {
        class: "edge", x1: x(edge.j), y1: y(edge.k), x2: x(edge.i), y2: y(edge.k + 1),
        stroke: edge.value >= 0 ? "#d62728" : "#1f77b4",
        "stroke-width": (0.4 + 2.6 * edge.w).toFixed(2), "stroke-opacity": (0.2 + 0.75 * edge.w).toFixed(2),
        "data-layer": source.layers[edge.k], "data-from": edge.j, "data-to": edge.i,
      });
      lines.push(line);
      edgeGroup.appendChild(line);
    });
    svg.appendChild(edgeGroup);
    var nodeGroup = s("g", { class: "nodes" }), radius = Math.max(2.5, Math.min(5, colW / 3.2)), circles = {};
    var special = r.special_mask || [];
    for (var rr = 0; rr < rows; rr++) {
      for (var j = 0; j < n; j++) {
        var circle = s("circle", {
          class: "node" + (root && root.row === rr && root.token === j ? " root" : ""),
          cx: x(j), cy: y(rr), r: radius, fill: rr === K ? "#444" : special[j] ? "#bbb" : "#777",
          "data-row": rr, "data-token": j,
        });
        circle.appendChild(s("title", { text: (rr === 0 ? "input" : layerWord(source.layers[rr - 1])) + ": " + r.tokens[j] +
          (rr === K ? " (click to root the graph here)" : "") }));
        circles[rr * n + j] = circle;
        nodeGroup.appendChild(circle);
      }
    }
    svg.appendChild(nodeGroup);
    var labels = s("g", { class: "labels" }), base = y(0) + 14;
    r.tokens.forEach(function (token, j) {
      var label = s("text", {
        x: x(j), y: base, "font-size": colW < 20 ? 9 : 11, fill: special[j] ? "#888" : "#222",
        "text-anchor": colW < 40 ? "end" : "middle", "data-token": j, text: short(token, 16),
        transform: colW < 40 ? "rotate(-60 " + x(j) + " " + base + ")" : null,
      });
      labels.appendChild(label);
    });
    svg.appendChild(labels);
    graphState = { edges: edges, lines: lines, circles: circles, n: n, K: K, layers: source.layers };
    var words = edges.length + " edges" + (found.total > edges.length && !root ? " (the " + edges.length +
      " strongest of " + found.total + ")" : "") + " with |weight| \u2265 " + fmt(Math.max(threshold, found.cutoff), 2) +
      " \u00d7 its layer's largest";
    if (root) words += "; rooted at " + r.tokens[root.token] + " (position " + root.token + "): only what reaches it";
    words += ". Edges run from a token's node in one layer up to the nodes that read it in the next; " +
      (found.signed ? "red positive, blue negative." : "thicker is stronger.");
    caption.textContent = words;
    svg.dataset.edges = String(edges.length);
    svg.dataset.source = key;
    svg.dataset.threshold = String(threshold);
    svg.dataset.root = root ? String(root.token) : "";
    $("x-graph-unroot").disabled = !root;
    highlightGraph();
  }

  function highlightGraph() {
    var svg = $("x-graph-svg");
    if (!graphState) return;
    var g = graphState, selection = state.selection, n = g.n;
    svg.classList.toggle("focused", !!selection);
    var hitEdges = {}, hitNodes = {};
    if (selection) {
      var starts = [];
      if (selection.row === null) for (var row = 0; row <= g.K; row++) starts.push(row * n + selection.token);
      else starts.push(selection.row * n + selection.token);
      [true, false].forEach(function (upward) {
        var found = reach(g.edges, starts, upward);
        Object.keys(found.edges).forEach(function (e) { hitEdges[e] = true; });
        Object.keys(found.nodes).forEach(function (node) { hitNodes[node] = true; });
      });
    }
    g.lines.forEach(function (line, e) {
      line.classList.toggle("dim", !!selection && !hitEdges[e]);
      line.classList.toggle("hl", !!selection && !!hitEdges[e]);
    });
    Object.keys(g.circles).forEach(function (node) {
      var on = !!hitNodes[node];
      g.circles[node].classList.toggle("hl", !!selection && on);
      g.circles[node].classList.toggle("dim", !!selection && !on);
    });
    svg.dataset.highlighted = String(Object.keys(hitEdges).length);
  }

  function selectToken(token, row) {
    var same = state.selection && state.selection.token === token && state.selection.row === row;
    state.selection = same ? null : { token: token, row: row };
    markSelection();
    highlightGraph();
  }

  // ------------------------------------------------------------------ heatmaps (canvas: one pixel block per cell)
  function fillHeatmapKinds() {
    var select = $("x-hm-kind"), previous = select.value;
    clear(select);
    var specs = sourceSpecs(state.result);
    specs.sort(function (a, b) { return (b.perHead ? 1 : 0) - (a.perHead ? 1 : 0); });
    specs.forEach(function (spec) {
      select.appendChild(h("option", { value: spec.key, text: spec.perHead ? spec.key.slice(2) : spec.label + " (method)" }));
    });
    if (previous && select.querySelector('option[value="' + CSS.escape(previous) + '"]')) select.value = previous;
    fillHeatmapLayers();
  }

  function layersOfKind(key) {
    var r = state.result;
    if (!key) return [];
    if (key.indexOf("r:") === 0) return r.matrices[key.slice(2)].layers;
    var entry = r.methods[key.slice(2)], count = decode(entry.matrices).shape[0];
    return entry.layers.length === count ? entry.layers : Array.from({ length: count }, function (_, i) { return i; });
  }

  function fillHeatmapLayers() {
    var key = $("x-hm-kind").value, layerSelect = $("x-layer"), headSelect = $("x-head");
    var previous = layerSelect.value, layers = layersOfKind(key);
    clear(layerSelect);
    layers.forEach(function (layer, row) { layerSelect.appendChild(h("option", { value: String(row), text: layerWord(layer) })); });
    if (previous !== "" && Number(previous) < layers.length) layerSelect.value = previous;
    else layerSelect.value = String(Math.max(0, layers.length - 1));
    var heads = key ? headsOf(state.result, key) : 0, previousHead = headSelect.value;
    var spec = heads ? state.result.matrices[key.slice(2)] : null;
    clear(headSelect);
    headSelect.appendChild(h("option", { value: "mean", text: heads ? "mean" : "fused by the method" }));
    for (var hd = 0; hd < heads; hd++) {
      var option = h("option", { value: String(hd), text: "head " + hd });
      option.disabled = !(spec.per_head || canFetch());
      headSelect.appendChild(option);
    }
    headSelect.disabled = !heads;
    if (previousHead && headSelect.querySelector('option[value="' + previousHead + '"]:not([disabled])')) headSelect.value = previousHead;
  }

  var heatmapState = null;

  async function heatmapMatrix(key, row, head) {
    var r = state.result, n = r.tokens.length;
    if (key.indexOf("r:") === 0 && head !== "mean") {
      var spec = r.matrices[key.slice(2)];
      if (!spec.per_head) {
        var fetched = await getJSON("api/heads/" + encodeURIComponent(r.id) + "?kind=" + encodeURIComponent(key.slice(2)) +
          "&layer=" + row + "&head=" + Number(head) + "&encoding=float16");
        return slice(decode(fetched.data), 0, n * n);
      }
    }
    var source = await matrices(key, head);
    return source.mats[row];
  }

  async function drawHeatmap() {
    var r = state.result, key = $("x-hm-kind").value, canvas = $("x-hm-canvas"), caption = $("x-hm-caption");
    var context = canvas.getContext("2d");
    if (!key) {
      canvas.width = 10; canvas.height = 10;
      caption.textContent = "No matrices in this result.";
      heatmapState = null;
      return;
    }
    var row = Number($("x-layer").value || 0), head = $("x-head").value || "mean", layers = layersOfKind(key);
    var mat;
    try {
      mat = await heatmapMatrix(key, row, head);
    } catch (error) {
      caption.textContent = String(error.message || error);
      return;
    }
    if (state.result !== r) return;
    var n = r.tokens.length, cell = Math.max(1, Math.min(20, Math.floor(720 / Math.max(n, 1))));
    var labelled = cell >= 7, margin = labelled ? 96 : 6;
    canvas.width = margin + n * cell + 4;
    canvas.height = margin + n * cell + 4;
    var scale = 0;
    for (var q = 0; q < mat.length; q++) { var a = Math.abs(mat[q]); if (a > scale) scale = a; }
    var image = context.createImageData(n, n);
    for (var p = 0; p < n * n; p++) {
      var c = mix(mat[p], scale);
      image.data[4 * p] = c[0]; image.data[4 * p + 1] = c[1]; image.data[4 * p + 2] = c[2]; image.data[4 * p + 3] = 255;
    }
    var off = document.createElement("canvas");
    off.width = n; off.height = n;
    off.getContext("2d").putImageData(image, 0, 0);
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.imageSmoothingEnabled = false;
    context.drawImage(off, margin, margin, n * cell, n * cell);
    if (labelled) {
      context.fillStyle = "#333";
      context.font = Math.min(11, cell) + "px system-ui, sans-serif";
      context.textBaseline = "middle";
      context.textAlign = "right";
      r.tokens.forEach(function (token, i) { context.fillText(short(token), margin - 4, margin + (i + 0.5) * cell); });
      r.tokens.forEach(function (token, i) {
        context.save();
        context.translate(margin + (i + 0.5) * cell, margin - 4);
        context.rotate(-Math.PI / 3);
        context.textAlign = "left";
        context.fillText(short(token), 0, 0);
        context.restore();
      });
    }
    var what = key.indexOf("r:") === 0 ? key.slice(2) : key.slice(2) + "'s matrix";
    caption.textContent = what + ", " + layerWord(layers[row]) + ", " + (head === "mean" ? (key.indexOf("r:") === 0 ?
      "mean over heads" : "as the method fuses heads") : "head " + head) + "; row: the token that reads (query), " +
      "column: the token read (key); colour scaled to the largest |value| " + fmt(scale, 3) + ".";
    canvas.dataset.kind = key;
    canvas.dataset.layer = String(layers[row]);
    canvas.dataset.head = head;
    canvas.dataset.cell = String(cell);
    canvas.dataset.margin = String(margin);
    heatmapState = { mat: mat, n: n, cell: cell, margin: margin, scale: scale, key: key, row: row, head: head };
  }

  function heatmapReadout(event) {
    var g = heatmapState, canvas = $("x-hm-canvas");
    if (!g) return;
    var box = canvas.getBoundingClientRect(), ratio = canvas.width / box.width;
    var px = (event.clientX - box.left) * ratio - g.margin, py = (event.clientY - box.top) * ratio - g.margin;
    var k = Math.floor(px / g.cell), q = Math.floor(py / g.cell), tokens = state.result.tokens;
    if (k < 0 || q < 0 || k >= g.n || q >= g.n) { $("x-hm-readout").textContent = ""; return; }
    $("x-hm-readout").textContent = tokens[q] + " (" + q + ") reads " + tokens[k] + " (" + k + "): " + fmt(g.mat[q * g.n + k], 4);
  }

  // ------------------------------------------------------------------ head scores
  function renderHeadGrid() {
    var r = state.result, table = $("x-head-grid"), note = $("x-heads-note");
    clear(table);
    if (!r.head_scores) {
      note.textContent = "Head scores come from self-attention attribution; choose a method that computes it.";
      return;
    }
    var values = r.head_scores.values, heads = values.length ? values[0].length : 0, scale = 0;
    values.forEach(function (row) { row.forEach(function (v) { scale = Math.max(scale, Math.abs(v)); }); });
    note.textContent = "The largest attribution of each head, max over (i, j) of Attr[i, j] (Hao et al. 2021 \u00a74.1). " +
      "Click a cell to show that head's attribution in the heatmap.";
    var header = h("tr", {}, [h("th", {})]);
    for (var hd = 0; hd < heads; hd++) header.appendChild(h("th", { text: String(hd) }));
    table.appendChild(header);
    values.forEach(function (row, k) {
      var line = h("tr", {}, [h("th", { text: layerWord(r.head_scores.layers[k]) })]);
      row.forEach(function (v, hd) {
        var cell = h("td", { "data-row": k, "data-head": hd, title: layerWord(r.head_scores.layers[k]) + ", head " + hd + ": " + fmt(v, 4), text: fmt(v, 2) });
        cell.style.background = rgba(v, scale);
        line.appendChild(cell);
      });
      table.appendChild(line);
    });
  }

  async function headCellClicked(cell) {
    var r = state.result, kind = $("x-hm-kind");
    var key = "r:attribution";
    if (!r.matrices.attribution) return;
    kind.value = key;
    fillHeatmapLayers();
    $("x-layer").value = cell.dataset.row;
    var option = $("x-head").querySelector('option[value="' + cell.dataset.head + '"]');
    if (option && !option.disabled) $("x-head").value = cell.dataset.head;
    document.querySelectorAll("#x-head-grid td.sel").forEach(function (td) { td.classList.remove("sel"); });
    cell.classList.add("sel");
    await drawHeatmap();
  }

  // ------------------------------------------------------------------ the attribution tree
  function drawTree() {
    var r = state.result, svg = $("x-tree-svg"), note = $("x-tree-note"), tree = r.tree;
    clear(svg);
    if (!tree || !tree.nodes || !tree.nodes.length) {
      note.textContent = "The attribution tree comes from self-attention attribution; choose a method that computes it.";
      setAttrs(svg, { width: 10, height: 10 });
      return;
    }
    var tokens = tree.nodes.map(function (node) { return node.token; }).sort(function (a, b) { return a - b; });
    var column = {}, layerOf = {};
    tokens.forEach(function (token, c) { column[token] = c; });
    tree.nodes.forEach(function (node) { layerOf[node.token] = node.layer; });
    var layers = tree.nodes.map(function (node) { return node.layer; });
    var top = Math.max.apply(null, layers), bottom = Math.min.apply(null, layers);
    var colW = 86, rowH = 58, left = 70, topY = 22, width = left + tokens.length * colW + 10, height = topY + (top - bottom) * rowH + 40;
    setAttrs(svg, { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    function x(token) { return left + (column[token] + 0.5) * colW; }
    function y(layer) { return topY + (top - layer) * rowH; }
    svg.appendChild(s("rect", { x: 0, y: 0, width: width, height: height, fill: "#ffffff" }));
    for (var layer = bottom; layer <= top; layer++) {
      svg.appendChild(s("text", { x: 4, y: y(layer) + 4, "font-size": 11, fill: "#777", text: layer === tree.num_layers ? "output" : "in " + layerWord(layer) }));
    }
    tree.edges.forEach(function (edge) {
      var line = s("line", {
        x1: x(edge.child), y1: y(layerOf[edge.child]), x2: x(edge.parent), y2: y(layerOf[edge.parent]),
        stroke: "#d62728", "stroke-width": (0.8 + 2.5 * Math.min(1, edge.score)).toFixed(2), "stroke-opacity": 0.75,
      });
      line.appendChild(s("title", { text: "layer " + edge.layer + ": " + r.tokens[edge.parent] + " attends to " + r.tokens[edge.child] + " (score " + fmt(edge.score, 3) + ")" }));
      svg.appendChild(line);
    });
    tree.nodes.forEach(function (node) {
      var isRoot = node.token === tree.root.token;
      var g = s("g", { class: "tree-node", "data-token": node.token });
      g.appendChild(s("rect", {
        x: x(node.token) - colW / 2 + 4, y: y(node.layer) - 10, width: colW - 8, height: 20, rx: 4,
        fill: isRoot ? "#333" : "#f4f4f4", stroke: "#999",
      }));
      g.appendChild(s("text", {
        x: x(node.token), y: y(node.layer) + 4, "font-size": 11, "text-anchor": "middle", fill: isRoot ? "#fff" : "#222",
        text: short(r.tokens[node.token], 11),
      }));
      svg.appendChild(g);
    });
    note.textContent = "Root " + r.tokens[tree.root.token] + " (" + tree.root_mode + "); threshold \u03c4 = " + fmt(tree.threshold) +
      ". A line j \u2192 i means token i attends to token j in the layer where j sits: information flows up (Hao et al. 2021 \u00a74.3).";
  }

  // ------------------------------------------------------------------ settings and completeness
  function kvTable(rows) {
    var table = h("table", { class: "kvs" });
    rows.forEach(function (row) { table.appendChild(h("tr", {}, [h("th", { text: row[0] }), h("td", { text: row[1] })])); });
    return table;
  }

  function plain(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return fmt(value, 4);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function renderSettings() {
    var r = state.result, box = $("x-settings-body");
    clear(box);
    methodNames(r).forEach(function (name) {
      var entry = r.methods[name], rows = [["description", entry.overall_description || entry.description]];
      if (entry.completeness_gap !== null && entry.completeness_gap !== undefined) rows.push(["completeness gap", fmt(entry.completeness_gap, 3)]);
      Object.keys(entry.settings || {}).forEach(function (key) { rows.push([key, plain(entry.settings[key])]); });
      Object.keys(entry.diagnostics || {}).forEach(function (key) { rows.push([key, plain(entry.diagnostics[key])]); });
      box.appendChild(h("h3", { text: name }));
      box.appendChild(kvTable(rows));
    });
    var skipped = Object.keys(r.skipped || {});
    if (skipped.length) {
      box.appendChild(h("h3", { text: "not run" }));
      box.appendChild(kvTable(skipped.map(function (name) { return [name, r.skipped[name]]; })));
    }
    if (r.completeness_gap) {
      box.appendChild(h("h3", { text: "attribution: completeness per layer" }));
      var layers = r.matrices && r.matrices.attribution ? r.matrices.attribution.layers : [];
      box.appendChild(kvTable(r.completeness_gap.map(function (gap, k) {
        return [layerWord(layers[k] !== undefined ? layers[k] : k), "gap " + fmt(gap, 3) + ", F(0\u00b7A) = " + fmt((r.baseline_probability || [])[k], 4)];
      })));
    }
  }

  // ------------------------------------------------------------------ what-if
  function setupWhatIf() {
    var r = state.result, box = $("x-whatif-tokens"), special = r.special_mask || [];
    clear(box);
    clear($("x-whatif-result"));
    if (state.inline) return;
    r.tokens.forEach(function (token, i) {
      var chip = h("button", {
        type: "button", class: "chip" + (special[i] ? " special" : ""), "data-testid": "whatif-token", "data-index": i,
        title: special[i] ? "special tokens stay" : "click to blank out", text: token,
      });
      chip.disabled = !!special[i];
      box.appendChild(chip);
    });
    $("x-whatif-text").value = r.text || "";
  }

  async function whatIfClicked() {
    var r = state.result;
    if (!r || state.inline) return;
    var text = $("x-whatif-text").value, edited = text !== r.text;
    var blank = Object.keys(state.blank).filter(function (k) { return state.blank[k]; }).map(Number);
    var body = {
      text: text, text_pair: r.text_pair, model: r.model, methods: methodNames(r), target: r.requested_target,
      truncation: !!r.truncated, blank: edited ? [] : blank, heads: false, encoding: "float16",
    };
    var after = await run(body);
    if (after) compare(r, after, edited ? "edited text" : blank.length + " token(s) blanked out");
  }

  function compare(before, after, what) {
    var box = $("x-whatif-result");
    clear(box);
    var target = before.target !== undefined && before.target !== null ? before.target : before.predicted;
    var table = h("table", { class: "compare" });
    table.appendChild(h("tr", {}, [h("th", {}), h("th", { text: "before" }), h("th", { text: "after (" + what + ")" })]));
    table.appendChild(h("tr", {}, [h("th", { text: "prediction" }),
      h("td", { text: outputLabel(before, before.predicted) + "  p = " + fmt(probabilityOf(before, before.predicted), 4) }),
      h("td", { "data-testid": "whatif-prediction", text: outputLabel(after, after.predicted) + "  p = " + fmt(probabilityOf(after, after.predicted), 4) })]));
    var pBefore = probabilityOf(before, target), pAfter = probabilityOf(after, target);
    var delta = pAfter !== null && pBefore !== null ? pAfter - pBefore : null;
    var deltaCell = h("td", { class: "delta " + (delta > 0 ? "up" : "down"), text: delta === null ? "–" : (delta >= 0 ? "+" : "") + fmt(delta, 3) });
    table.appendChild(h("tr", {}, [h("th", { text: "p(" + outputLabel(before, target) + ")" }),
      h("td", { text: fmt(pBefore, 4) }), h("td", { text: fmt(pAfter, 4) + " " }, [deltaCell])]));
    box.appendChild(table);
    var same = before.tokens.length === after.tokens.length;
    var n = Math.max(before.tokens.length, after.tokens.length);
    var grid = h("div", { class: "score-grid", "data-testid": "whatif-grid" });
    grid.style.gridTemplateColumns = "max-content repeat(" + n + ", max-content)";
    function addRow(label, result, values, sub) {
      var special = result.special_mask || [], scale = scaleOf(values, special);
      grid.appendChild(h("div", { class: "name" + (sub ? " sub" : ""), text: label }));
      for (var i = 0; i < n; i++) {
        var token = result.tokens[i];
        var cell = h("span", { class: "cell" + (special[i] ? " special" : ""), title: token === undefined ? "" : token + " = " + fmt(values[i], 4), text: token === undefined ? "" : token });
        if (token !== undefined) cell.style.background = rgba(values[i], scale);
        grid.appendChild(cell);
      }
    }
    methodNames(before).forEach(function (name) {
      if (!after.methods[name]) return;
      addRow(name + " \u00b7 before", before, before.methods[name].overall, false);
      addRow(name + " \u00b7 after", after, after.methods[name].overall, true);
    });
    box.appendChild(h("div", { class: "scroll" }, [grid]));
    if (!same) box.appendChild(h("p", { class: "note", text: "The edit changed the number of tokens: columns no longer match word for word." }));
    var open = h("button", { type: "button", "data-testid": "whatif-open", text: "explore the new input" });
    open.addEventListener("click", function () { show(after, true); });
    box.appendChild(h("div", { class: "row" }, [open]));
  }

  // ------------------------------------------------------------------ history
  function remember_(result) {
    state.history = state.history.filter(function (entry) { return entry.id !== result.id || !result.id; });
    state.history.unshift(result);
    state.history = state.history.slice(0, HISTORY);
  }

  function renderHistory() {
    var list = $("x-history");
    clear(list);
    state.history.forEach(function (result) {
      var button = h("button", {
        type: "button", "data-testid": "history-item",
        text: result.model + ": " + short(result.text || result.tokens.join(" "), 70) + " \u2192 " +
          outputLabel(result, result.predicted) + " (" + fmt(probabilityOf(result, result.predicted), 3) + ")",
      });
      button.addEventListener("click", function () { show(result, false); });
      list.appendChild(h("li", { class: result === state.result ? "current" : null }, [button]));
    });
  }

  // ------------------------------------------------------------------ export: every view as SVG and PNG
  var EXPORT_STYLE = ".edge.dim{stroke-opacity:.06}.node.dim{fill-opacity:.25}.node.hl{stroke:#000;stroke-width:1.5}" +
    ".node.root{stroke:#000;stroke-width:2.5}text{font-family:system-ui,-apple-system,'Segoe UI',sans-serif}";

  function serialise(svg) {
    var copy = svg.cloneNode(true);
    copy.setAttribute("xmlns", SVG_NS);
    copy.removeAttribute("data-testid");
    var style = document.createElementNS(SVG_NS, "style");
    style.textContent = EXPORT_STYLE;
    copy.insertBefore(style, copy.firstChild);
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(copy);
  }

  var measurer = null;
  function textWidth(text, size) {
    measurer = measurer || document.createElement("canvas").getContext("2d");
    measurer.font = size + "px system-ui, sans-serif";
    return measurer.measureText(text).width;
  }

  function scoresSvg() {
    var r = state.result, view = $("x-score-view").value, names = methodNames(r), special = r.special_mask || [];
    var widths = r.tokens.map(function (token) { return Math.max(12, textWidth(token, 12) + 8); });
    var labelW = Math.max.apply(null, names.map(function (name) { return textWidth(name, 12); }).concat([40])) + 14;
    var rowH = 22, width = labelW + widths.reduce(function (a, b) { return a + b + 2; }, 0) + 8, height = (names.length + 1) * rowH + 8;
    var svg = s("svg", { xmlns: SVG_NS, width: width, height: height, viewBox: "0 0 " + width + " " + height });
    svg.appendChild(s("rect", { x: 0, y: 0, width: width, height: height, fill: "#ffffff" }));
    [null].concat(names).forEach(function (name, row) {
      var y = 4 + row * rowH, values = name ? rowValues(r.methods[name], view).values : null, scale = values ? scaleOf(values, special) : 0;
      svg.appendChild(s("text", { x: 4, y: y + 15, "font-size": 12, "font-weight": 600, fill: "#222", text: name || "token" }));
      var x = labelW;
      r.tokens.forEach(function (token, i) {
        if (values) svg.appendChild(s("rect", { x: x, y: y + 1, width: widths[i], height: rowH - 4, rx: 3, fill: rgb(mix(values[i], scale)) }));
        svg.appendChild(s("text", { x: x + widths[i] / 2, y: y + 15, "font-size": 12, "text-anchor": "middle", fill: special[i] ? "#888" : "#222", text: token }));
        x += widths[i] + 2;
      });
    });
    return svg;
  }

  function heatmapSvg() {
    var g = heatmapState, canvas = $("x-hm-canvas"), tokens = state.result.tokens;
    var width = canvas.width, height = canvas.height;
    var svg = s("svg", { xmlns: SVG_NS, width: width, height: height, viewBox: "0 0 " + width + " " + height });
    svg.appendChild(s("rect", { x: 0, y: 0, width: width, height: height, fill: "#ffffff" }));
    if (!g) return svg;
    if (g.n <= 96) {
      for (var q = 0; q < g.n; q++) {
        for (var k = 0; k < g.n; k++) {
          svg.appendChild(s("rect", { x: g.margin + k * g.cell, y: g.margin + q * g.cell, width: g.cell, height: g.cell, fill: rgb(mix(g.mat[q * g.n + k], g.scale)) }));
        }
      }
      if (g.margin > 10) {
        tokens.forEach(function (token, i) {
          var at = g.margin + (i + 0.5) * g.cell;
          svg.appendChild(s("text", { x: g.margin - 4, y: at + 3, "font-size": Math.min(11, g.cell), "text-anchor": "end", fill: "#333", text: short(token) }));
          svg.appendChild(s("text", { x: at, y: g.margin - 4, "font-size": Math.min(11, g.cell), fill: "#333", transform: "rotate(-60 " + at + " " + (g.margin - 4) + ")", text: short(token) }));
        });
      }
    } else {
      svg.appendChild(s("image", { x: 0, y: 0, width: width, height: height, href: canvas.toDataURL("image/png") }));
    }
    return svg;
  }

  function headsSvg() {
    var r = state.result;
    var svg = s("svg", { xmlns: SVG_NS, width: 10, height: 10 });
    if (!r.head_scores) return svg;
    var values = r.head_scores.values, heads = values.length ? values[0].length : 0, cw = 34, ch = 22, left = 70, top = 22, scale = 0;
    values.forEach(function (row) { row.forEach(function (v) { scale = Math.max(scale, Math.abs(v)); }); });
    var width = left + heads * cw + 6, height = top + values.length * ch + 6;
    setAttrs(svg, { width: width, height: height, viewBox: "0 0 " + width + " " + height });
    svg.appendChild(s("rect", { x: 0, y: 0, width: width, height: height, fill: "#ffffff" }));
    for (var hd = 0; hd < heads; hd++) svg.appendChild(s("text", { x: left + (hd + 0.5) * cw, y: 15, "font-size": 11, "text-anchor": "middle", fill: "#666", text: String(hd) }));
    values.forEach(function (row, k) {
      svg.appendChild(s("text", { x: 4, y: top + k * ch + 15, "font-size": 11, fill: "#666", text: layerWord(r.head_scores.layers[k]) }));
      row.forEach(function (v, hd2) {
        svg.appendChild(s("rect", { x: left + hd2 * cw, y: top + k * ch, width: cw - 1, height: ch - 1, fill: rgb(mix(v, scale)) }));
        svg.appendChild(s("text", { x: left + (hd2 + 0.5) * cw, y: top + k * ch + 15, "font-size": 10, "text-anchor": "middle", fill: "#222", text: fmt(v, 2) }));
      });
    });
    return svg;
  }

  function viewSvg(view) {
    if (view === "graph") return $("x-graph-svg");
    if (view === "tree") return $("x-tree-svg");
    if (view === "scores") return scoresSvg();
    if (view === "heatmap") return heatmapSvg();
    return headsSvg();
  }

  function baseName(view) { return "attrflow-" + view + (state.result && state.result.id ? "-" + state.result.id.slice(0, 8) : ""); }

  function utf8Base64(text) {
    var bytes = new TextEncoder().encode(text), binary = "";
    for (var i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(binary);
  }

  function exportSvg(view) {
    downloadText(baseName(view) + ".svg", serialise(viewSvg(view)), "image/svg+xml");
  }

  function exportPng(view) {
    if (view === "heatmap") { download(baseName(view) + ".png", $("x-hm-canvas").toDataURL("image/png")); return; }
    var svg = viewSvg(view), width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height"));
    var image = new Image(), ratio = Math.min(2, 16000 / Math.max(width, height, 1));
    image.onload = function () {
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      var context = canvas.getContext("2d");
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      download(baseName(view) + ".png", canvas.toDataURL("image/png"));
    };
    image.src = "data:image/svg+xml;base64," + utf8Base64(serialise(svg));
  }

  function addExportButtons() {
    document.querySelectorAll("#explore .exports").forEach(function (box) {
      var view = box.dataset.view;
      [["svg", "SVG", exportSvg], ["png", "PNG", exportPng]].forEach(function (spec) {
        var button = h("button", { type: "button", "data-testid": "export-" + spec[0], "data-view": view, title: "download this view as " + spec[1], text: spec[1] });
        button.addEventListener("click", function () { if (state.result) spec[2](view); });
        box.appendChild(button);
      });
    });
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    addExportButtons();
    $("x-explain").addEventListener("click", explainClicked);
    $("x-cancel").addEventListener("click", cancel);
    $("x-text").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); explainClicked(); }
    });
    $("x-model").addEventListener("change", function () { fillMethods(); fillTargets(); });
    $("x-target").addEventListener("change", function () { $("x-target-token").hidden = $("x-target").value !== "token"; });
    $("x-score-view").addEventListener("change", renderScores);
    $("x-score-grid").addEventListener("click", function (event) {
      var chip = event.target.closest("[data-testid=token]");
      if (chip) selectToken(Number(chip.dataset.index), null);
    });
    $("x-graph-source").addEventListener("change", function () { fillGraphHeads(); drawGraph(); });
    $("x-graph-head").addEventListener("change", drawGraph);
    var pending = false;
    $("x-threshold").addEventListener("input", function () {
      $("x-threshold-value").textContent = Number($("x-threshold").value).toFixed(2);
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; drawGraph(); });
    });
    $("x-graph-unroot").addEventListener("click", function () { state.root = null; drawGraph(); });
    $("x-graph-svg").addEventListener("click", function (event) {
      var node = event.target.closest("circle.node");
      if (!node || !graphState) return;
      var row = Number(node.dataset.row), token = Number(node.dataset.token);
      if (row === graphState.K) {
        var same = state.root && state.root.token === token;
        state.root = same ? null : { row: -1, token: token };
        drawGraph();
      } else {
        selectToken(token, row);
      }
    });
    $("x-hm-kind").addEventListener("change", function () { fillHeatmapLayers(); drawHeatmap(); });
    $("x-layer").addEventListener("change", drawHeatmap);
    $("x-head").addEventListener("change", drawHeatmap);
    $("x-hm-canvas").addEventListener("mousemove", heatmapReadout);
    $("x-head-grid").addEventListener("click", function (event) {
      var cell = event.target.closest("td[data-head]");
      if (cell) headCellClicked(cell);
    });
    $("x-whatif-tokens").addEventListener("click", function (event) {
      var chip = event.target.closest("[data-testid=whatif-token]");
      if (!chip || chip.disabled) return;
      var i = Number(chip.dataset.index);
      state.blank[i] = !state.blank[i];
      chip.classList.toggle("blank", state.blank[i]);
    });
    $("x-whatif-run").addEventListener("click", whatIfClicked);
    $("x-export-json").addEventListener("click", function () {
      if (state.result) downloadText(baseName("result") + ".json", JSON.stringify(state.result), "application/json");
    });
    $("x-export-report").addEventListener("click", function () {
      if (state.result && state.result.id) download(baseName("report") + ".html", "api/report/" + encodeURIComponent(state.result.id));
    });
  }

  async function start() {
    wire();
    var block = document.getElementById("attrflow-data");
    if (block) {
      var data = JSON.parse(block.textContent);
      state.inline = true;
      state.methods = data.methods || [];
      ROOT.classList.add("inline");
      show(data.result, false);
      return;
    }
    ROOT.classList.add("served");
    try {
      var loaded = await Promise.all([getJSON("api/models"), getJSON("api/methods")]);
      state.models = loaded[0];
      state.methods = loaded[1];
    } catch (error) {
      showError("Could not reach the explorer's API: " + error.message);
      return;
    }
    fillModels();
    fillMethods();
    fillTargets();
    ROOT.dataset.state = "idle";
  }

  start();
})();

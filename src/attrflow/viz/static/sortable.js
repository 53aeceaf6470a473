// attrflow: sort any table with class "sortable" by clicking a column heading (numbers by their data-sort value,
// missing values last); a second click reverses the order. No network, no dependencies.
(function () {
  "use strict";
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent; }
    var number = parseFloat(raw);
    return isNaN(number) ? { text: raw.toLowerCase(), missing: raw === "" || raw === "n/a" } : { number: number };
  }
  function compare(a, b, descending) {
    if (a.missing || b.missing) { return a.missing === b.missing ? 0 : (a.missing ? 1 : -1); }
    var order;
    if (a.number !== undefined && b.number !== undefined) { order = a.number - b.number; }
    else { order = String(a.text || a.number).localeCompare(String(b.text || b.number)); }
    return descending ? -order : order;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headings = table.querySelectorAll("thead th");
    headings.forEach(function (heading, column) {
      heading.setAttribute("role", "button");
      heading.setAttribute("tabindex", "0");
      function sort() {
        var descending = heading.getAttribute("aria-sort") !== "descending";
        headings.forEach(function (other) { other.removeAttribute("aria-sort"); });
        heading.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (x, y) { return compare(key(x.cells[column]), key(y.cells[column]), descending); });
        rows.forEach(function (row) { body.appendChild(row); });
      }
      heading.addEventListener("click", sort);
      heading.addEventListener("keydown", function (event) { if (event.key === "Enter") { sort(); } });
    });
  });
})();

// Draws the dashboard's charts: each element with data-figure names the JSON data block that
// holds its plotly.js figure (data and layout), written by the server. Nothing is fetched.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-figure]").forEach(function (el) {
    var figure = JSON.parse(document.getElementById(el.dataset.figure).textContent);
    var layout = Object.assign({ font: { family: "Helvetica, Arial, sans-serif", size: 12 } },
      figure.layout);
    Plotly.newPlot(el, figure.data, layout, { displaylogo: false, displayModeBar: false, responsive: true })
      .then(function () { el.dataset.drawn = "true"; });
  });
});

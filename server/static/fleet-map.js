/* The fleet map (server/templates/fleet_map.html): the nodes of the user's areas as circles
   coloured by state, each area's outline (the convex hull of its placed nodes, from the server;
   a padded box around one or two nodes), and tiles only when the server names a tile source.
   It knows no state or kind by name: a marker's colour and an outline's stroke come from the
   classes named after them (server/static/app.css, beside the legend's), the label from the
   page (one data-label-* attribute per state, in the reader's language). */
(function () {
  "use strict";

  function start() {
    var box = document.getElementById("fleet-map");
    var status = document.getElementById("fleet-map-status");
    if (!box || !window.L) { return; }
    var map = L.map(box, {zoomControl: true, attributionControl: !!box.dataset.tiles});
    if (box.dataset.tiles) {
      L.tileLayer(box.dataset.tiles, {maxZoom: 19}).addTo(map);
    }
    map.setView([16.0, 107.5], 5);  // Viet Nam, until the nodes say where to look
    fetch(box.dataset.src, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) { draw(map, box, status, data); })
      .catch(function (e) { status.textContent = String(e); });
  }

  function outline(points, style) {
    if (points.length >= 3) { return L.polygon(points, style); }
    var bounds = L.latLngBounds(points).pad(0.5);
    if (bounds.getNorth() === bounds.getSouth()) {  // one place: a small box around it
      bounds = L.latLngBounds([points[0][0] - 0.002, points[0][1] - 0.002],
                              [points[0][0] + 0.002, points[0][1] + 0.002]);
    }
    return L.rectangle(bounds, style);
  }

  function draw(map, box, status, data) {
    var all = [];
    data.areas.forEach(function (area) {
      if (!area.outline.length) { return; }
      var shape = outline(area.outline, {className: "fleet-area fleet-area-" + area.kind});
      shape.bindTooltip(area.name);
      shape.addTo(map);
    });
    data.nodes.forEach(function (node) {
      var marker = L.circleMarker([node.lat, node.lon], {
        radius: 9, weight: 2, fillOpacity: 1,
        className: "fleet-marker fleet-state-" + node.state});
      var label = box.dataset["label" + node.state.replace(/(^|_)(\w)/g, function (m, u, c) {
        return c.toUpperCase(); })] || node.state;
      var link = document.createElement("a");
      link.href = node.url;
      link.textContent = node.name + " (" + node.id + ") — " + label;
      marker.bindPopup(link);
      marker.addTo(map);
      all.push([node.lat, node.lon]);
    });
    box.dataset.markers = String(all.length);
    if (all.length) {
      map.fitBounds(L.latLngBounds(all).pad(0.2), {maxZoom: 17});
    } else {
      status.textContent = box.dataset.empty;
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

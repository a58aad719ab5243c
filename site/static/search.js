// Search for the firmware index. An external file on purpose: the pages' Content-Security-Policy
// forbids inline script. Rows are built with textContent only, never innerHTML, so metadata that
// contains markup stays text.
(function () {
  "use strict";

  // Enough to scan; drawing more costs layout time (500 rows take ~0.4 s at 100,000 images) and a
  // reader narrows the query rather than scrolling.
  var MAX_ROWS = 200;
  var SEP = "\u0001"; // starts every word of the searchable text; see words()
  var box = document.getElementById("search-box");
  var input = document.getElementById("search");
  var table = document.getElementById("images");
  if (!box || !input || !table) {
    return;
  }
  var tbody = table.tBodies[0];
  var statusLine = document.getElementById("search-status");
  var range = document.getElementById("range");
  var pagers = document.querySelectorAll("nav.pages");
  var caption = table.caption;
  var pageCaption = caption ? caption.textContent : "";
  var pageRows = Array.prototype.slice.call(tbody.rows);
  var pageText = pageRows.map(rowText);
  var index = null; // {images[], text[]} once search-index.json has loaded
  var loadState = "idle"; // idle -> loading -> ready | failed
  var timer = 0;

  box.hidden = false;

  function load() {
    if (loadState !== "idle") {
      return;
    }
    loadState = "loading";
    fetch(input.getAttribute("data-index"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        var images = data.rows.map(function (row) { return decode(data, row); });
        index = { images: images, text: images.map(haystack) };
        loadState = "ready";
        run();
      })
      .catch(function () {
        // Opened from file:// or the index is missing: keep searching the rows on this page.
        loadState = "failed";
        run();
      });
  }

  // Row fields by position: see _search_index in repo_tool/site.py, which documents each one.
  function decode(data, row) {
    var mfr = data.manufacturers[row[3]];
    var image = {
      imageType: row[0],
      mfrId: mfr[0],
      mfrName: mfr[1],
      mfrPage: mfr[2],
      deviceType: row[4],
      models: row[5].map(function (m) { return data.models[m]; }),
      firmware: row[6],
      hardware: row[7],
      reason: row[8],
      advisories: row[9],
      size: row[10],
      sizeText: row[11],
      published: row[12],
      sha256: row[13],
      miSha256: row[14],
      withdrawn: row[15]
    };
    // The standard target path (metadata_templates.naming.image_target_path) is left out of the
    // index when it can be rebuilt from the other fields.
    image.target = row[1] || image.mfrId + "/" + image.deviceType + "-" + image.imageType + "-" +
      image.firmware + "-" + image.sha256.slice(0, 16) + ".ota";
    image.page = row[2] || "image/" + image.target + ".html";
    return image;
  }

  // Searchable text: every word of every field, each preceded by SEP, so that a query word is
  // matched against the start of a word. Matching anywhere inside made short queries noisy: "1010"
  // hit the middle of thousands of hashes instead of manufacturer 1010.
  function words(parts) {
    return SEP + parts.join(" ").toLowerCase().split(/\s+/).filter(Boolean).join(SEP);
  }

  function rowText(row) {
    // Text node by text node: textContent would glue neighbouring list items into one word.
    var parts = [row.getAttribute("data-target")];
    var walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      parts.push(walker.currentNode.nodeValue);
    }
    return words(parts);
  }

  function haystack(image) {
    var parts = [
      image.target, image.mfrId, image.mfrName, image.deviceType, image.firmware, image.hardware,
      image.reason, image.advisories.join(" "), image.published, image.sha256, image.miSha256
    ];
    image.models.forEach(function (m) {
      parts.push(m[0], m[1]);
    });
    if (image.withdrawn) {
      parts.push("withdrawn");
    }
    return words(parts);
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function idName(id, name) {
    var frag = document.createDocumentFragment();
    frag.appendChild(el("span", id, "id"));
    frag.appendChild(document.createTextNode(" " + name));
    return frag;
  }

  function cell(child, tag) {
    var node = el(tag || "td");
    if (child) {
      node.appendChild(child);
    }
    return node;
  }

  function buildRow(image) {
    var tr = el("tr");
    tr.setAttribute("data-target", image.target);
    if (image.withdrawn) {
      tr.className = "withdrawn";
    }

    var mfrLink = el("a");
    mfrLink.href = image.mfrPage;
    mfrLink.appendChild(idName(image.mfrId, image.mfrName));
    tr.appendChild(cell(mfrLink));

    tr.appendChild(el("td", image.deviceType));

    var models = el("ul", null, "models");
    image.models.forEach(function (m) {
      var li = el("li");
      li.appendChild(idName(m[0], m[1]));
      models.appendChild(li);
    });
    tr.appendChild(cell(models));

    var th = el("th");
    th.scope = "row";
    var fw = el("a", image.firmware, "fw");
    fw.href = image.page;
    th.appendChild(fw);
    tr.appendChild(th);

    tr.appendChild(el("td", image.hardware, "nowrap"));

    var reason = el("td");
    reason.appendChild(el("span", image.reason, "reason " + image.reason));
    if (image.advisories.length) {
      var advisories = el("ul", null, "advisories");
      image.advisories.forEach(function (a) {
        advisories.appendChild(el("li", a));
      });
      reason.appendChild(advisories);
    }
    tr.appendChild(reason);

    var size = el("data", image.sizeText);
    size.value = String(image.size);
    var sizeCell = cell(size);
    sizeCell.className = "num";
    tr.appendChild(sizeCell);

    var published = el("time", image.published);
    published.dateTime = image.published;
    tr.appendChild(cell(published));

    var state;
    if (image.withdrawn) {
      state = el("span", "Withdrawn ", "status withdrawn");
      var when = el("time", image.withdrawn);
      when.dateTime = image.withdrawn;
      state.appendChild(when);
    } else {
      state = el("span", "Current", "status current");
    }
    tr.appendChild(cell(state));

    tr.appendChild(cell(el("code", image.sha256, "hash")));
    tr.appendChild(cell(el("code", image.miSha256, "hash")));
    return tr;
  }

  function matches(text, terms) {
    for (var i = 0; i < terms.length; i++) {
      if (text.indexOf(SEP + terms[i]) === -1) {
        return false;
      }
    }
    return true;
  }

  function show(rows, searching, message) {
    tbody.replaceChildren.apply(tbody, rows);
    for (var i = 0; i < pagers.length; i++) {
      pagers[i].hidden = searching;
    }
    if (range) {
      range.hidden = searching;
    }
    if (caption) {
      caption.textContent = searching ? "Search results" : pageCaption;
    }
    statusLine.textContent = message;
  }

  function run() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    if (!terms.length) {
      show(pageRows, false, "");
      return;
    }
    if (loadState === "ready") {
      var found = [];
      var total = 0;
      for (var i = 0; i < index.text.length; i++) {
        if (matches(index.text[i], terms)) {
          total++;
          if (found.length < MAX_ROWS) {
            found.push(buildRow(index.images[i]));
          }
        }
      }
      var message = total === 1 ? "1 image matches." : total + " images match.";
      if (total > MAX_ROWS) {
        message += " Showing the first " + MAX_ROWS + "; add words to narrow it down.";
      }
      show(found, true, message);
      return;
    }
    var local = pageRows.filter(function (row, i) {
      return matches(pageText[i], terms);
    });
    var note = loadState === "failed"
      ? " The full search index could not be loaded, so only this page was searched."
      : " Loading the full index to search every page…";
    show(local, true, local.length + " on this page match." + note);
  }

  input.addEventListener("focus", load);
  input.addEventListener("input", function () {
    load();
    // Coalesce fast typing into one search; each pass scans every image.
    window.clearTimeout(timer);
    timer = window.setTimeout(run, 80);
  });
  if (input.value) {
    // The browser restored a query (back button): apply it.
    load();
  }
})();

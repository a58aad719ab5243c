// Search for the firmware index. An external file on purpose: the pages' Content-Security-Policy
// forbids inline script. Rows are built with textContent only, never innerHTML, so metadata that
// contains markup stays text.
(function () {
  "use strict";

  // Rows drawn per search. Each drawn row may need its rows shard fetched, so this bounds what the
  // first search transfers as well as layout time; a reader narrows the query rather than scrolling.
  var MAX_ROWS = 50;
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
  // The sharded index (repo_tool/site/search.py): meta.json, then w-<prefix>.json per query word and
  // rows-<k>.json per shown row, each fetched once, on demand.
  var metaUrl = input.getAttribute("data-index");
  var folder = metaUrl.slice(0, metaUrl.lastIndexOf("/") + 1);
  var meta = null;
  var loadState = "idle"; // idle -> loading -> ready | failed
  var files = {}; // url -> Promise of parsed JSON (null for 404)
  var generation = 0; // a newer search makes an older one's answer stale
  var timer = 0;

  box.hidden = false;

  function getJson(url, missingOk) {
    if (!files[url]) {
      files[url] = fetch(url, { credentials: "same-origin" }).then(function (response) {
        if (missingOk && response.status === 404) {
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      });
    }
    return files[url];
  }

  function load() {
    if (loadState !== "idle") {
      return;
    }
    loadState = "loading";
    getJson(metaUrl, false)
      .then(function (data) {
        meta = data;
        loadState = "ready";
        run();
      })
      .catch(function () {
        // Opened from file:// or the index is missing: keep searching the rows on this page.
        loadState = "failed";
        run();
      });
  }

  // The file-name spelling of a word prefix: shard_name in repo_tool/site/search.py.
  function shardName(prefix) {
    var out = "";
    for (var i = 0; i < prefix.length; i++) {
      var c = prefix.charAt(i);
      out += /[a-z0-9]/.test(c) ? c : "_" + prefix.charCodeAt(i).toString(16) + "-";
    }
    return out;
  }

  // Posting lists: a positive step d adds d to the id, a negative -k adds 1, k times (from -1).
  function decodeIds(encoded, into) {
    var current = -1;
    for (var i = 0; i < encoded.length; i++) {
      var step = encoded[i];
      if (step > 0) {
        current += step;
        into[current] = true;
      } else {
        for (var k = 0; k < -step; k++) {
          current += 1;
          into[current] = true;
        }
      }
    }
  }

  // The word shards that may hold words starting with `term`: those whose prefix is a prefix of
  // the term (its ancestors and its leaf) and those whose prefix starts with the term.
  function shardsFor(term) {
    return meta.shards.filter(function (prefix) {
      return term.lastIndexOf(prefix, 0) === 0 || prefix.lastIndexOf(term, 0) === 0;
    });
  }

  function idsFor(term) {
    return Promise.all(shardsFor(term).map(function (prefix) {
      return getJson(folder + "w-" + shardName(prefix) + ".json", true);
    })).then(function (shards) {
      var found = {};
      shards.forEach(function (shard) {
        if (shard) {
          Object.keys(shard.words).forEach(function (word) {
            if (word.lastIndexOf(term, 0) === 0) {
              decodeIds(shard.words[word], found);
            }
          });
        }
      });
      return found;
    });
  }

  // Query words as the index has them: a pasted target path (121D/ESME-0001-ACDCACDC-3f2a....ota)
  // is not a word of the index, its parts are.
  function queryTerms(text) {
    var terms = [];
    text.toLowerCase().split(/\s+/).filter(Boolean).forEach(function (term) {
      if (term.indexOf("/") === -1) {
        terms.push(term);
        return;
      }
      term.replace(/\.ota$/, "").split(/[\/-]/).forEach(function (part) {
        if (part) {
          terms.push(part);
        }
      });
    });
    return terms;
  }

  function rowsFor(ids) {
    var per = meta.rows_per_shard;
    var shards = {};
    ids.forEach(function (id) {
      shards[Math.floor(id / per)] = true;
    });
    var keys = Object.keys(shards);
    return Promise.all(keys.map(function (k) {
      return getJson(folder + "rows-" + k + ".json", false);
    })).then(function (loaded) {
      var byShard = {};
      keys.forEach(function (k, i) {
        byShard[k] = loaded[i].rows;
      });
      return ids.map(function (id) {
        return decode(byShard[Math.floor(id / per)][id % per]);
      });
    });
  }

  function decode(row) {
    var image = {
      imageType: row[0],
      mfrId: row[3][0],
      mfrName: row[3][1],
      mfrPage: row[3][2],
      deviceType: row[4],
      models: row[5],
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

  function searchPage(terms, note) {
    var local = pageRows.filter(function (row, i) {
      return matches(pageText[i], terms);
    });
    show(local, true, local.length + " on this page match." + note);
  }

  function run() {
    var terms = queryTerms(input.value);
    var mine = ++generation;
    if (!terms.length) {
      show(pageRows, false, "");
      return;
    }
    if (loadState !== "ready") {
      searchPage(terms, loadState === "failed"
        ? " The search index could not be loaded, so only this page was searched."
        : " Loading the search index to search every page…");
      return;
    }
    var long = terms.filter(function (t) { return t.length >= meta.prefix_length; });
    if (long.length < terms.length) {
      searchPage(terms, " Type at least " + meta.prefix_length +
        " characters a word to search every image.");
      return;
    }
    Promise.all(long.map(idsFor))
      .then(function (sets) {
        // Ids are publication order, oldest first: newest first means highest first.
        var ids = Object.keys(sets[0]).map(Number).filter(function (id) {
          if (id >= meta.count) {
            return false; // never trust a shard beyond the rows meta.json announces
          }
          for (var i = 1; i < sets.length; i++) {
            if (!sets[i][id]) {
              return false;
            }
          }
          return true;
        });
        ids.sort(function (a, b) { return b - a; });
        return rowsFor(ids.slice(0, MAX_ROWS)).then(function (images) {
          return { total: ids.length, images: images };
        });
      })
      .then(function (result) {
        if (mine !== generation) {
          return; // the reader typed on; a newer search will answer
        }
        var total = result.total;
        var message = total === 1 ? "1 image matches." : total + " images match.";
        if (total > MAX_ROWS) {
          message += " Showing the first " + MAX_ROWS + " (newest first); add words to narrow it down.";
        }
        show(result.images.map(buildRow), true, message);
      })
      .catch(function () {
        if (mine === generation) {
          searchPage(terms, " The search index could not be read, so only this page was searched.");
        }
      });
  }

  input.addEventListener("focus", load);
  input.addEventListener("input", function () {
    load();
    // Coalesce fast typing into one search.
    window.clearTimeout(timer);
    timer = window.setTimeout(run, 80);
  });
  if (input.value) {
    // The browser restored a query (back button): apply it.
    load();
  }
})();

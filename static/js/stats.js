/* Stats page: totals, charts and confusion matrices from GET /api/stats. */
(function (window, $) {
  'use strict';

  var D = window.Digits;
  var Chart = window.Chart;
  var NETS = $('#stats-app').data('nets');   // the server's names for the nets, in the order shown
  var NAMES = $('#stats-app').data('net-titles');
  // One hue per net, in NETS' order, and lighter shades for older versions of the same net.
  var HUES = [['#0d6efd', '#6ea8fe', '#9ec5fe', '#cfe2ff'], ['#d63384', '#e685b5', '#efadce', '#f7d6e6']];
  var COLOURS = {};
  NETS.forEach(function (net, i) { COLOURS[net] = HUES[i]; });
  // The second net's diamond is larger than the first's dot, so the two on one spot both show:
  // the dot on top (Chart.js draws a lower order last; the API lists the second net first).
  var POINTS = [{ style: 'circle', radius: 4 }, { style: 'rectRot', radius: 6 }];
  var DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

  var $status = $('#status');
  var reducedMotion = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;

  function load() {
    D.getJSON($('#stats-app').data('stats-url'))
      .done(show)
      .fail(function (xhr) {
        D.setStatus($status, D.errorMessage(xhr, 'Could not load the statistics'), 'error');
      });
  }

  function show(stats) {
    var totals = stats.totals || {};
    var empty = !totals.feedback;
    showTotals(totals);
    showVersions(stats.versions || []);
    $('#no-feedback').toggleClass('d-none', !empty);
    $('#charts, #confusion').toggleClass('d-none', empty);
    $('#stats-body').removeClass('d-none');
    if (!empty) {
      timelineChart(stats.timeline || []);
      recallChart(stats.per_digit || {});
      NETS.forEach(function (net) { confusionTable(net, (stats.confusion || {})[net]); });
    }
    D.setStatus($status, empty
      ? 'No answers yet.'
      : 'Based on ' + totals.feedback + ' answer' + (totals.feedback === 1 ? '' : 's') + '.', 'info');
  }

  function showTotals(totals) {
    $('[data-total=feedback]').text(totals.feedback || 0);
    NETS.forEach(function (net) {
      var t = totals[net] || {};
      $('[data-total=' + net + ']').text(D.percent(t.accuracy, 1));
      $('[data-total-detail=' + net + ']').text((t.correct || 0) + ' of ' + (t.total || 0) + ' right');
    });
  }

  /* One line per net and version. The x axis is time, not days: each point sits at the mean
     time of its answers, so versions that served on the same day stand side by side. */
  function timelineChart(timeline) {
    var series = {};
    var order = [];
    timeline.forEach(function (row) {
      var key = row.net + ' ' + row.version;
      if (!series[key]) { series[key] = { net: row.net, version: row.version, points: [] }; order.push(key); }
      series[key].points.push({ x: Date.parse(row.time || row.date), y: row.accuracy, row: row });
    });
    var shade = {};
    NETS.forEach(function (net) { shade[net] = 0; });
    var datasets = order.map(function (key) {
      var s = series[key];
      var colour = COLOURS[s.net] ? COLOURS[s.net][Math.min(shade[s.net]++, 3)] : '#6c757d';
      return {
        label: (NAMES[s.net] || s.net) + ' \u00b7 ' + s.version,
        data: s.points,
        borderColor: colour,
        backgroundColor: colour,
        pointStyle: POINTS[Math.max(0, NETS.indexOf(s.net))].style,
        pointRadius: POINTS[Math.max(0, NETS.indexOf(s.net))].radius,
        order: Math.max(0, NETS.indexOf(s.net)),
        clip: 8,   // a point at 100% shows whole, not cut by the chart's top edge
        tension: 0.2
      };
    });
    var options = chartOptions();
    options.scales.x = timeAxis(timeline.map(function (row) { return Date.parse(row.time || row.date); }));
    options.plugins.legend = { labels: { usePointStyle: true } };
    options.plugins.tooltip.callbacks.title = function (items) {
      return items.length ? answeredOn(items[0].raw.row) : '';
    };
    new Chart(document.getElementById('timeline-chart'), {
      type: 'line',
      data: { datasets: datasets },
      options: options
    });
  }

  var HOUR = 3600 * 1000;
  var STEPS = [1, 2, 3, 6, 12, 24, 48, 7 * 24, 28 * 24].map(function (h) { return h * HOUR; });

  /* A linear axis over the answers' times, its ticks on whole local hours or days. */
  function timeAxis(times) {
    var first = Math.min.apply(null, times);
    var last = Math.max.apply(null, times);
    var pad = Math.max((last - first) * 0.05, 0.5 * HOUR);   // no point on the very edge
    var step = STEPS.filter(function (s) { return (last - first + 2 * pad) / s <= 8; })[0] || STEPS[STEPS.length - 1];
    var min = startOfStep(first - pad, step);
    var max = min + Math.ceil((last + pad - min) / step) * step;
    return {
      type: 'linear', min: min, max: max,
      ticks: {
        stepSize: step,
        maxRotation: 0,   // on a phone, fewer labels rather than slanted ones cut short
        // Hours under the date, which is said only where it changes.
        callback: function (value, index, ticks) {
          var date = dayOf(value);
          if (step >= 24 * HOUR) { return date; }
          var hour = new Date(value).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
          return index === 0 || dayOf(ticks[index - 1].value) !== date ? [hour, date] : hour;
        }
      }
    };
  }

  function dayOf(time) {
    return new Date(time).toLocaleDateString([], { day: 'numeric', month: 'short' });
  }

  function startOfStep(time, step) {
    var day = new Date(time);
    day.setHours(0, 0, 0, 0);
    if (step >= 24 * HOUR) { return day.getTime(); }
    return day.getTime() + Math.floor((time - day.getTime()) / step) * step;
  }

  /* "24 Nov, 09:30 · 12 answers": when a point's answers came in, on average. */
  function answeredOn(row) {
    var when = new Date(row.time || row.date).toLocaleString([], { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
    return row.total ? when + ' \u00b7 ' + row.total + ' answer' + (row.total === 1 ? '' : 's') : when;
  }

  function recallChart(perDigit) {
    new Chart(document.getElementById('recall-chart'), {
      type: 'bar',
      data: {
        labels: DIGITS,
        datasets: NETS.map(function (net) {
          // A stub for 0%, so a digit the net always missed does not look like one nobody drew.
          return {
            label: NAMES[net], data: perDigit[net] || [], backgroundColor: COLOURS[net][0], minBarLength: 3
          };
        })
      },
      options: chartOptions()
    });
  }

  /* Shared: y axis is a share from 0 to 100 %, tooltips say the percentage. */
  function chartOptions() {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: reducedMotion ? false : { duration: 400 },
      scales: {
        y: { min: 0, max: 1, ticks: { callback: function (v) { return Math.round(v * 100) + '%'; } } }
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: function (ctx) {
              return ctx.dataset.label + ': ' + (ctx.parsed.y === null ? 'no data' : D.percent(ctx.parsed.y, 1));
            }
          }
        }
      }
    };
  }

  /* A heatmap: each cell shaded by its count relative to the largest cell. */
  function confusionTable(net, matrix) {
    if (!matrix) { return; }
    var max = 0;
    matrix.forEach(function (row) { row.forEach(function (n) { max = Math.max(max, n); }); });
    $('#confusion-' + net + ' tbody tr').each(function (t) {
      $(this).find('td').each(function (p) {
        var n = (matrix[t] || [])[p] || 0;
        var strength = max ? n / max : 0;
        var hue = t === p ? '25, 135, 84' : '220, 53, 69';   // green when right, red when mixed up
        // CSSOM, not a style attribute: the CSP forbids inline styles in markup.
        this.style.backgroundColor = n ? 'rgba(' + hue + ', ' + (0.12 + 0.88 * strength).toFixed(2) + ')' : '';
        this.style.color = strength > 0.55 ? '#fff' : '';
        $(this).text(n).toggleClass('is-zero', !n).attr('title', n + ' drawn as ' + t + ', answered ' + p);
      });
    });
  }

  function showVersions(versions) {
    var $body = $('#versions tbody').empty();
    if (!versions.length) {
      $body.append($('<tr>').append($('<td colspan="5" class="text-body-secondary">')
        .text('No model versions recorded yet.')));
      return;
    }
    versions.forEach(function (v) {
      var metrics = v.metrics || {};
      var $version = $('<td>').text(v.version);
      if (v.current) { $version.append(' ', $('<span class="badge text-bg-success">').text('live')); }
      $body.append($('<tr>').append(
        $('<td>').text(NAMES[v.net] || v.net),
        $version,
        $('<td class="d-none d-md-table-cell">').text(v.created ? new Date(v.created).toLocaleString() : '\u2013'),
        $('<td class="text-end">').text(D.percent(metrics.mnist_test_accuracy, 2)),
        $('<td class="text-end">').text(metrics.user_heldout_accuracy === null || metrics.user_heldout_accuracy === undefined
          ? 'not enough drawings yet' : D.percent(metrics.user_heldout_accuracy, 2))
      ));
    });
  }

  load();
}(window, window.jQuery));

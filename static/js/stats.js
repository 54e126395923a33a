/* Stats page: totals, charts and confusion matrices from GET /api/stats. */
(function (window, $) {
  'use strict';

  var D = window.Digits;
  var Chart = window.Chart;
  var NETS = ['fnn', 'cnn'];
  var NAMES = { fnn: 'FNN', cnn: 'CNN' };
  // Two hues, one per net, and lighter shades for older versions of the same net.
  var COLOURS = { fnn: ['#0d6efd', '#6ea8fe', '#9ec5fe', '#cfe2ff'], cnn: ['#d63384', '#e685b5', '#efadce', '#f7d6e6'] };
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

  function timelineChart(timeline) {
    var dates = unique(timeline.map(function (row) { return row.date; })).sort();
    var series = {};
    var order = [];
    timeline.forEach(function (row) {
      var key = row.net + ' ' + row.version;
      if (!series[key]) { series[key] = { net: row.net, version: row.version, byDate: {} }; order.push(key); }
      series[key].byDate[row.date] = row.accuracy;
    });
    var shade = { fnn: 0, cnn: 0 };
    var datasets = order.map(function (key) {
      var s = series[key];
      var colour = COLOURS[s.net] ? COLOURS[s.net][Math.min(shade[s.net]++, 3)] : '#6c757d';
      return {
        label: (NAMES[s.net] || s.net) + ' \u00b7 ' + s.version,
        data: dates.map(function (d) { return d in s.byDate ? s.byDate[d] : null; }),
        borderColor: colour,
        backgroundColor: colour,
        spanGaps: true,
        tension: 0.2,
        pointRadius: 4
      };
    });
    new Chart(document.getElementById('timeline-chart'), {
      type: 'line',
      data: { labels: dates, datasets: datasets },
      options: chartOptions()
    });
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

  function unique(list) {
    return list.filter(function (x, i) { return list.indexOf(x) === i; });
  }

  load();
}(window, window.jQuery));

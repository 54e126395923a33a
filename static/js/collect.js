/*
 * Collect page: pick a label, draw, save to /hook, and start again. The
 * counts per digit steer people towards the digit the dataset lacks most.
 */
(function (window, $) {
  'use strict';

  var D = window.Digits;
  var $app = $('#collect-app');
  var $status = $('#status');
  var $save = $('#save');
  var urls = { hook: $app.data('hook-url'), counts: $app.data('counts-url') };
  var saving = false;
  var counts = null;

  var pad = D.setupPad(refreshSave);

  function label() {
    var value = $('input[name=label]:checked').val();
    return value === undefined ? null : value;
  }

  function chooseLabel(digit) {
    $('#label-' + digit).prop('checked', true).trigger('change');
  }

  function refreshSave() {
    var chosen = label();
    $('#target-digit').text(chosen === null ? 'a digit' : D.aDigit(chosen));
    $save.prop('disabled', saving || chosen === null || pad.isEmpty());
    $save.text(chosen === null ? 'Pick a digit first' : 'Save as ' + chosen);
  }

  function save() {
    var chosen = label();
    if (saving) { return; }
    if (chosen === null) {
      D.setStatus($status, 'Pick which digit you drew first (buttons or keys 0\u20139).', 'error');
      return;
    }
    if (pad.isEmpty()) {
      D.setStatus($status, 'Draw the digit first.', 'error');
      return;
    }
    saving = true;
    refreshSave();
    D.setStatus($status, 'Saving\u2026', 'busy');
    $.ajax({
      url: urls.hook,
      method: 'POST',
      data: { imageBase64: pad.toDataURL(), digit: chosen },
      dataType: 'json',
      timeout: 20000
    }).done(function (body) {
      D.setStatus($status, 'Saved as ' + body.name + '. Thank you! Draw another one.', 'success');
      pad.clear();
      loadCounts();
    }).fail(function (xhr) {
      // Keep the drawing: the person can simply press Save again.
      D.setStatus($status, D.errorMessage(xhr, 'Not saved') + ' Your drawing is kept.', 'error');
    }).always(function () {
      saving = false;
      refreshSave();
    });
  }

  function loadCounts() {
    D.getJSON(urls.counts).done(showCounts).fail(function () {
      $('#total-count').text('unknown (the server did not answer)');
    });
  }

  function showCounts(body) {
    counts = body.counts || {};
    $('#total-count').text(body.total);
    // The total holds "not a digit" drawings too, which no digit below counts: say how many.
    var notDigits = counts.none || 0;
    $('#not-digit-count').text(notDigits ? ' (' + notDigits + ' not a digit)' : '');
    for (var d = 0; d < 10; d++) {
      var n = counts[String(d)] || 0;
      $('[data-count=' + d + ']').text(n + (n === 1 ? ' drawing' : ' drawings'));
    }
    var rare = rarest(counts);
    $('.label-picker .btn').removeClass('is-rarest');
    if (!balanced(counts)) { $('#label-btn-' + rare).addClass('is-rarest'); }
    showNudge(rare);
    // Start people on the digit we need most; never override a choice they made.
    if (label() === null) { chooseLabel(rare); }
  }

  /* The digit with the fewest drawings; ties go to the lowest digit, so the choice is stable. */
  function rarest(tally) {
    var best = 0;
    for (var d = 1; d < 10; d++) {
      if ((tally[String(d)] || 0) < (tally[String(best)] || 0)) { best = d; }
    }
    return best;
  }

  function balanced(tally) {
    var first = tally['0'] || 0;
    for (var d = 1; d < 10; d++) {
      if ((tally[String(d)] || 0) !== first) { return false; }
    }
    return true;
  }

  function showNudge(rare) {
    var $nudge = $('#nudge').removeClass('d-none').empty();
    if (balanced(counts)) {
      $nudge.text('We have the same number of every digit, so any digit helps. Why not start with ' + rare + '?');
      return;
    }
    var plural = rare + 's';
    $nudge.append($('<span>').text('We have the fewest ' + plural + ' \u2014 draw ' + D.aDigit(rare) + '? '));
    if (label() !== String(rare)) {
      $nudge.append($('<button type="button" class="btn btn-sm btn-warning ms-1" id="take-nudge">')
        .text('Yes, draw ' + D.aDigit(rare)).attr('data-digit', rare));
    }
  }

  $('#label-picker').on('change', 'input[name=label]', function () {
    refreshSave();
    if (counts) { showNudge(rarest(counts)); }
  });
  $('#nudge').on('click', '#take-nudge', function () {
    chooseLabel($(this).attr('data-digit'));
    $('#pad').trigger('focus');
  });
  $save.on('click', save);

  window.DigitPad.bindShortcuts({
    undo: function () { pad.undo(); },
    clear: function () { pad.clear(); },
    digit: chooseLabel,
    enter: save
  });

  refreshSave();
  loadCounts();
}(window, window.jQuery));

/*
 * Wires the shared pad markup (templates/_pad.html) to a DigitPad: Undo and
 * Clear buttons, the brush slider (remembered across visits), and the
 * "Draw here" hint. Pages pass onChange to hear about every edit.
 */
(function (window, $) {
  'use strict';

  var BRUSH_KEY = 'digits.brush';

  function setupPad(onChange) {
    var $undo = $('#undo');
    var $clear = $('#clear');
    var $brush = $('#brush');
    var $hint = $('#pad-hint');

    var pad = new window.DigitPad(document.getElementById('pad'), {
      brush: Number($brush.val()),
      onChange: function (why) {
        refresh();
        onChange(why);
      }
    });

    function refresh() {
      var empty = pad.isEmpty();
      $undo.prop('disabled', empty);
      $clear.prop('disabled', empty);
      $hint.toggleClass('d-none', !empty);
    }

    function showBrush() {
      $('#brush-value').text($brush.val() + '\u00a0px');
      pad.setBrush($brush.val());
    }

    var saved = readBrush();
    if (saved) { $brush.val(saved); }
    showBrush();
    $brush.on('input', function () {
      showBrush();
      try { window.localStorage.setItem(BRUSH_KEY, $brush.val()); } catch (e) { /* private mode */ }
    });
    $undo.on('click', function () { pad.undo(); });
    $clear.on('click', function () { pad.clear(); });
    // The hint hides as soon as a stroke starts, not only when it ends.
    $('#pad').on('pointerdown', function () { $hint.addClass('d-none'); });
    refresh();
    return pad;
  }

  function readBrush() {
    try {
      var value = Number(window.localStorage.getItem(BRUSH_KEY));
      return value >= 10 && value <= 24 ? value : null;
    } catch (e) {
      return null;
    }
  }

  window.Digits.setupPad = setupPad;
}(window, window.jQuery));

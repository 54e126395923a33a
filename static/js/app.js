/*
 * Predict page: ask both networks after every stroke, show their answers, and
 * ask the person whether they were right.
 */
(function (window, $) {
  'use strict';

  var D = window.Digits;
  var DEBOUNCE_MS = 200;   // long enough to skip mid-gesture pauses, short enough to feel live
  var SURE = 0.6;          // below this top probability the answer is a guess, and we say so
  var CONSENT_KEY = 'digits.consent';

  var $app = $('#predict-app');
  var NETS = $app.data('nets');          // the server's names for the nets, in the order shown
  var TITLES = $app.data('net-titles');
  var $status = $('#status');
  var $feedback = $('#feedback');
  var $picker = $('#picker');
  var urls = { predict: $app.data('predict-url'), feedback: $app.data('feedback-url') };
  var blankPreview = $('#preview').attr('src');

  var timer = 0;
  var seq = 0;             // every request and every edit bumps this; answers to older numbers are dropped
  var prediction = null;   // the last answer shown, while feedback on it is still possible
  var sending = false;     // an answer is on its way: keys and buttons must not send a second

  var pad = D.setupPad(onEdit);

  function onEdit() {
    window.clearTimeout(timer);
    seq += 1;              // whatever is in flight now describes an older drawing
    prediction = null;
    hideFeedback();
    $('#retry').addClass('d-none');
    if (pad.isEmpty()) {
      resetResults();
      D.setStatus($status, 'Draw a digit to start.', 'info');
      return;
    }
    timer = window.setTimeout(predict, DEBOUNCE_MS);
  }

  function predict() {
    var mine = ++seq;
    $('#retry').addClass('d-none');
    D.setStatus($status, 'Recognising\u2026', 'busy');
    D.postJSON(urls.predict, { imageBase64: pad.toDataURL() })
      .done(function (answer) {
        if (mine !== seq) { return; }
        showPrediction(answer);
      })
      .fail(function (xhr) {
        if (mine !== seq) { return; }
        // The answers on show were for an earlier drawing: clear them. The drawing stays on
        // the pad, and Try again (or Enter) sends it again.
        resetResults();
        $('#retry').removeClass('d-none');
        D.setStatus($status, D.errorMessage(xhr, 'Could not recognise the drawing') +
          ' Your drawing is kept.', 'error');
      });
  }

  function showPrediction(answer) {
    if (answer.empty) {
      resetResults();
      D.setStatus($status, 'The canvas looks empty to the server. Try a bigger, darker digit.', 'info');
      return;
    }
    NETS.forEach(function (net) { showNet(net, answer); });
    $('#preview').attr('src', answer.preview || blankPreview);
    prediction = answer;
    askFeedback(answer);
    D.setStatus($status, summary(answer), 'success');
  }

  /* One plain sentence: what they say, and whether they mean it. */
  function summary(answer) {
    var said = NETS.map(function (net) {
      return { title: TITLES[net], digit: answer[net].digit, sure: topProbability(answer[net]) >= SURE };
    });
    var sure = said.filter(function (s) { return s.sure; }).length;
    if (!sure) {
      return 'Neither network is sure. Best guesses: ' +
        said.map(function (s) { return s.title + ' ' + s.digit; }).join(', ') + '.';
    }
    if (said.every(function (s) { return s.digit === said[0].digit; })) {
      return 'Both networks say ' + said[0].digit + (sure === said.length ? '.' : ', but one of them is not sure.');
    }
    return 'The networks disagree: ' + said.map(function (s) {
      return s.title + ' says ' + s.digit + (s.sure ? '' : ' (not sure)');
    }).join(', ') + '.';
  }

  function topProbability(result) {
    return (result.probabilities || [])[result.digit] || 0;
  }

  function showNet(net, answer) {
    var result = answer[net];
    var $card = $('#net-' + net);
    var probs = result.probabilities || [];
    var top = topProbability(result);
    var unsure = top < SURE;
    $card.find('[data-field=digit]').text(result.digit);
    $card.find('[data-field=confidence]').text(D.percent(top) + ' sure');
    $card.find('[data-field=verdict]').text(unsure
      ? 'Not sure \u2014 this is a guess'
      : 'Confident');
    $card.find('.unsure-badge').toggleClass('d-none', !unsure);
    $card.toggleClass('is-unsure', unsure).addClass('has-answer');
    showBars($card, probs, result.digit);
    showVersions($card, net, answer);
  }

  function showBars($card, probs, best) {
    $card.find('.prob-row').each(function () {
      var digit = Number($(this).data('digit'));
      var p = probs[digit] || 0;
      $(this).toggleClass('is-top', digit === best);
      // Set through the CSSOM (allowed by the CSP), not an inline style attribute.
      $(this).find('.prob-fill')[0].style.width = (p * 100).toFixed(1) + '%';
      $(this).find('.prob-value').text(D.percent(p));
    });
  }

  /* Current model next to the shipped one, so people can see whether learning helped. */
  function showVersions($card, net, answer) {
    var versions = (answer.versions || {})[net] || {};
    var current = versions.current || answer[net].version || 'unknown';
    var shipped = versions.original || 'original';
    var $original = $card.find('[data-field=original]');
    var old = answer.original && answer.original[net];
    if (old && current !== shipped) {
      var same = old.digit === answer[net].digit;
      $original.removeClass('d-none').empty()
        .append($('<span>').text('Shipped model (' + shipped + ') said '))
        .append($('<strong>').text(old.digit))
        .append($('<span>').text(' at ' + D.percent((old.probabilities || [])[old.digit]) +
          (same ? ' \u2014 same answer.' : ' \u2014 the retrained model changed its mind.')));
      $card.find('[data-field=version]').text('Model version: ' + current + ' (retrained from everyone\u2019s feedback)');
    } else {
      $original.addClass('d-none').empty();
      $card.find('[data-field=version]').text('Model version: ' + current +
        (current === shipped ? ' (as shipped)' : ''));
    }
  }

  function resetResults() {
    NETS.forEach(function (net) {
      var $card = $('#net-' + net);
      $card.removeClass('is-unsure has-answer');
      $card.find('[data-field=digit]').text('?');
      $card.find('[data-field=confidence]').html('&nbsp;');
      $card.find('[data-field=verdict]').text('waiting for a drawing');
      $card.find('.unsure-badge').addClass('d-none');
      $card.find('[data-field=original]').addClass('d-none').empty();
      showBars($card, [], -1);
      $card.find('.prob-value').text('\u2013');
    });
    $('#preview').attr('src', blankPreview);
  }

  /* "Is it a 7?" when the nets agree; "Which is right?" when they do not. */
  function askFeedback(answer) {
    var guesses = NETS.map(function (net) { return answer[net].digit; }).filter(function (d, i, all) {
      return d !== null && all.indexOf(d) === i;
    });
    var $answers = $('#feedback-answers').empty();
    if (guesses.length === 1) {
      $('#feedback-question').text('Right? Is it ' + D.aDigit(guesses[0]) + '?');
      $answers.append(answerButton('Yes, it\u2019s ' + D.aDigit(guesses[0]), guesses[0], 'btn-success'));
    } else {
      $('#feedback-question').text('Right? Which one is it?');
      guesses.forEach(function (d) {
        $answers.append(answerButton('It\u2019s ' + D.aDigit(d), d, 'btn-success'));
      });
    }
    $answers.append($('<button type="button" class="btn btn-outline-danger" id="answer-no">')
      .text(guesses.length === 1 ? 'No' : 'Neither')
      .attr('aria-expanded', 'false').attr('aria-controls', 'picker'));
    $picker.addClass('d-none');
    $feedback.attr('data-prediction-id', answer.id);   // lets tests and bug reports name the prediction
    $feedback.find('button').prop('disabled', false);
    $feedback.removeClass('d-none');
  }

  function answerButton(text, digit, style) {
    return $('<button type="button" class="btn">').addClass(style).attr('data-answer', digit).text(text);
  }

  function hideFeedback() {
    $feedback.addClass('d-none');
    $picker.addClass('d-none');
  }

  /* After an answer: the card that had focus goes, and focus moves on to the next drawing. */
  function closeFeedback() {
    hideFeedback();
    $('#pad').trigger('focus');
  }

  function openPicker() {
    $picker.removeClass('d-none');
    $('#answer-no').attr('aria-expanded', 'true');
    $picker.find('button').first().trigger('focus');
  }

  function sendFeedback(digit) {
    if (!prediction || sending) { return; }
    var answered = prediction;
    var consent = $('#consent').prop('checked');
    sending = true;
    $feedback.find('button').prop('disabled', true);
    D.setStatus($status, 'Sending your answer\u2026', 'busy');
    D.postJSON(urls.feedback, { id: answered.id, digit: digit, consent: consent })
      .done(function () {
        if (prediction !== answered) { return; }
        prediction = null;
        closeFeedback();
        D.setStatus($status, thanks(digit, consent), 'success');
      })
      .fail(function (xhr) {
        if (prediction !== answered) { return; }
        if (xhr.status === 409 || xhr.status === 404) {
          prediction = null;   // answering again cannot succeed: no card with dead buttons
          closeFeedback();
        } else {
          $feedback.find('button').prop('disabled', false);
        }
        D.setStatus($status, feedbackError(xhr), 'error');
      })
      .always(function () { sending = false; });
  }

  function thanks(digit, consent) {
    var what = digit === null ? 'not a digit' : D.aDigit(digit);
    return 'Thanks! Recorded as ' + what + '.' + (consent
      ? ' Your drawing will help the models learn.'
      : ' Your drawing will not be used for training.');
  }

  function feedbackError(xhr) {
    if (xhr.status === 409) { return 'You already answered for this drawing \u2014 thanks!'; }
    if (xhr.status === 404) { return 'The server no longer knows this prediction. Draw again to give feedback.'; }
    return D.errorMessage(xhr, 'Your answer was not saved');
  }

  /* The consent box starts unticked (a ticked box is not consent under the GDPR); whatever the
     person chose last is remembered in this browser. */
  function restoreConsent() {
    var saved = null;
    try { saved = window.localStorage.getItem(CONSENT_KEY); } catch (e) { /* storage disabled */ }
    if (saved === 'true' || saved === 'false') { $('#consent').prop('checked', saved === 'true'); }
  }

  $('#consent').on('change', function () {
    try {
      window.localStorage.setItem(CONSENT_KEY, String(this.checked));
    } catch (e) { /* storage disabled: the choice lasts until the page reloads */ }
  });
  restoreConsent();

  $feedback.on('click', 'button[data-answer]', function () {
    var raw = $(this).attr('data-answer');
    sendFeedback(raw === 'none' ? null : Number(raw));
  });
  $feedback.on('click', '#answer-no', openPicker);
  $('#retry').on('click', predict);

  window.DigitPad.bindShortcuts({
    undo: function () { pad.undo(); },
    clear: function () { pad.clear(); },
    // Digit keys answer "which digit was it?" once the picker is open.
    digit: function (n) {
      if (prediction && !$picker.hasClass('d-none')) { sendFeedback(n); }
    },
    enter: function () {
      if (!$('#retry').hasClass('d-none')) { predict(); }
    }
  });
}(window, window.jQuery));

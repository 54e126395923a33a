/* Small helpers shared by every page: talking to the API and saying what happened. */
(function (window, $) {
  'use strict';

  var STATUS_CLASSES = 'status-info status-success status-error status-busy';

  /* Show a message in a status line (an element with role="status", so screen readers hear it). */
  function setStatus($el, text, kind) {
    $el.removeClass(STATUS_CLASSES).addClass('status-' + (kind || 'info')).text(text || '');
  }

  /* A sentence a person can act on, for a failed jQuery request. */
  function errorMessage(xhr, what) {
    var prefix = what ? what + ': ' : '';
    if (xhr && xhr.statusText === 'timeout') {
      return prefix + 'the server took too long to answer. Please try again in a moment.';
    }
    if (!xhr || xhr.status === 0) {
      return prefix + 'can\u2019t reach the server. Check your connection and try again.';
    }
    var body = xhr.responseJSON;
    if (!body && xhr.responseText) {
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    }
    if (body && body.error) {
      return prefix + body.error + ' (HTTP ' + xhr.status + ').';
    }
    if (xhr.status >= 500) {
      return prefix + 'the server had a problem (HTTP ' + xhr.status + '). Please try again in a moment.';
    }
    return prefix + 'the request failed (HTTP ' + xhr.status + ').';
  }

  function postJSON(url, data) {
    return $.ajax({
      url: url,
      method: 'POST',
      contentType: 'application/json',
      data: JSON.stringify(data),
      dataType: 'json',
      timeout: 20000
    });
  }

  var BUSY_TRIES = 3;

  /* A GET of the API. When busy, the server sheds public reads at once with a 503 and a
     Retry-After (digits/public.py): such a read is asked again after the wait it names, a few
     times, before the caller hears of the failure. */
  function getJSON(url, data, triesLeft) {
    var left = triesLeft === undefined ? BUSY_TRIES : triesLeft;
    return $.ajax({ url: url, method: 'GET', data: data, dataType: 'json', timeout: 20000 })
      .then(null, function (xhr) {
        var wait = retryAfter(xhr);
        if (wait === null || left <= 0) { return $.Deferred().rejectWith(this, arguments); }
        return delay(wait).then(function () { return getJSON(url, data, left - 1); });
      });
  }

  /* The seconds a 503 asks us to wait (at most 10), or null for any other answer. */
  function retryAfter(xhr) {
    var seconds = xhr && xhr.status === 503 ? parseInt(xhr.getResponseHeader('Retry-After'), 10) : NaN;
    return isNaN(seconds) ? null : Math.min(Math.max(seconds, 0), 10);
  }

  function delay(seconds) {
    var waited = $.Deferred();
    window.setTimeout(waited.resolve, seconds * 1000);
    return waited.promise();
  }

  /* "a 7", but "an 8": the article goes with the digit's spoken name. */
  function aDigit(d) {
    return (String(d) === '8' ? 'an ' : 'a ') + d;
  }

  function percent(x, digits) {
    if (x === null || x === undefined || isNaN(x)) { return '\u2013'; }
    return (x * 100).toFixed(digits === undefined ? 0 : digits) + '%';
  }

  window.Digits = {
    setStatus: setStatus,
    errorMessage: errorMessage,
    postJSON: postJSON,
    getJSON: getJSON,
    busyTries: BUSY_TRIES,
    percent: percent,
    aDigit: aDigit
  };
}(window, window.jQuery));

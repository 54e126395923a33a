/*
 * Dataset page: a paged gallery of the collected drawings, filterable by label,
 * plus export and delete for whoever holds the admin token.
 */
(function (window, $) {
  'use strict';

  var D = window.Digits;
  var PER_PAGE = 48;
  var EXPORT_POLL_MS = 1500;   // an export's progress is asked for this often
  var TOKEN_KEY = 'digits.adminToken';
  var SOURCES = { collect: 'collected', confirmation: 'confirmed', correction: 'corrected' };

  var $app = $('#dataset-app');
  var urls = { dataset: $app.data('dataset-url'), exports: $app.data('export-url') };
  var $status = $('#status');
  var $adminStatus = $('#admin-status');
  var state = { label: '', page: 1, pages: 1 };   // the page on show, and how many there are
  var loading = 0;   // request number: a slow older page must not overwrite a newer one

  /* Show page `page`; the pager waits meanwhile, so quick clicks cannot skip pages. */
  function load(page) {
    var mine = ++loading;
    $('#prev, #next').prop('disabled', true);
    D.setStatus($status, 'Loading drawings\u2026', 'busy');
    D.getJSON(urls.dataset, { label: state.label, page: page, per_page: PER_PAGE })
      .done(function (body) {
        if (mine !== loading) { return; }
        state.pages = body.pages || 1;
        if (page > state.pages) { load(state.pages); return; }   // drawings were deleted meanwhile
        state.page = page;
        showGallery(body.items || []);
        showPager(body);
      })
      .fail(function (xhr) {
        if (mine !== loading) { return; }
        // Whatever is on show belongs to another page or filter: do not pass it off as this one.
        $('#gallery').empty();
        $('#page-info').text('');
        enablePager();
        D.setStatus($status, D.errorMessage(xhr, 'Could not load the drawings'), 'error');
      });
  }

  function enablePager() {
    $('#prev').prop('disabled', state.page <= 1);
    $('#next').prop('disabled', state.page >= state.pages);
  }

  function showGallery(items) {
    var $gallery = $('#gallery').empty();
    items.forEach(function (item) { $gallery.append(tile(item)); });
  }

  function tile(item) {
    var label = item.label === 'none' ? 'not a digit' : item.label;
    var when = item.created ? new Date(item.created) : null;
    var $figure = $('<figure>').attr('data-name', item.name);
    $figure.append($('<img loading="lazy" width="200" height="200">').attr('src', item.url)
      .attr('alt', 'Drawing labelled ' + label).on('error', askAgain));
    var $caption = $('<figcaption>')
      .append($('<strong>').text(label))
      .append($('<span>').text(' \u00b7 ' + (SOURCES[item.source] || item.source || '')));
    if (when) {
      $caption.append($('<br>'), $('<time>').attr('datetime', item.created).text(when.toLocaleDateString()));
    }
    $figure.append($caption);
    $figure.append($('<button type="button" class="btn btn-sm btn-outline-danger mt-1 delete admin-only">')
      .toggleClass('d-none', !token())
      .attr('data-url', item.delete_url)
      .attr('aria-label', 'Delete drawing ' + item.name)
      .text('Delete'));
    return $figure;
  }

  /* An image the server shed while busy (a 503: digits/public.py) is asked for again a few
     times, a second apart and more. An <img> cannot see the status, so a drawing deleted
     meanwhile is asked for again too, which costs a 404 each. */
  function askAgain() {
    var img = this;
    var tries = Number(img.getAttribute('data-tries') || 0) + 1;
    if (tries > D.busyTries) { return; }
    img.setAttribute('data-tries', tries);
    window.setTimeout(function () {
      img.src = img.src.split('?')[0] + '?try=' + tries;
    }, 1000 * tries);
  }

  /* "3 drawings", "1 drawing"; with a filter "3 7s" but "1 drawing of a 7". */
  function drawings(n) {
    var noun = n === 1 ? 'drawing' : 'drawings';
    if (state.label === 'none') { return '\u201cnot a digit\u201d ' + noun; }
    if (state.label === '') { return noun; }
    return n === 1 ? noun + ' of ' + D.aDigit(state.label) : state.label + 's';
  }

  function showPager(body) {
    var what = drawings(body.total);
    if (!body.total) {
      D.setStatus($status, state.label === ''
        ? 'No drawings yet. Be the first: save one on the Collect page.'
        : 'No ' + what + ' yet.', 'info');
    } else {
      D.setStatus($status, body.total + ' ' + what + ' \u00b7 page ' + body.page + ' of ' + body.pages, 'info');
    }
    $('#page-info').text(body.total ? 'Page ' + body.page + ' of ' + body.pages : '');
    $('#pager').toggleClass('d-none', state.pages <= 1);
    enablePager();
  }

  /* ---------- admin ---------- */

  function token() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function setToken(value) {
    try {
      if (value) { window.sessionStorage.setItem(TOKEN_KEY, value); } else { window.sessionStorage.removeItem(TOKEN_KEY); }
    } catch (e) { /* storage disabled: the token lasts until the page reloads */ }
    showAdmin();
  }

  function showAdmin() {
    var has = !!token();
    $('.admin-only').toggleClass('d-none', !has);
    $('#admin-token').val(has ? token() : '');
    D.setStatus($adminStatus, has
      ? 'Token set for this tab. Export and Delete are available; the server checks the token on use.'
      : 'No token entered.', 'info');
  }

  /* 401, 403 and 404 are the answers an admin will meet most: say what each means. */
  function adminError(status, serverText, action) {
    var meaning = {
      401: 'the server wants an admin token (401 Unauthorized)',
      403: 'the token was refused, or admin features are switched off on the server (403 Forbidden)',
      404: 'not found (404) \u2014 it may already be gone'
    }[status] || (status ? 'the server answered HTTP ' + status : 'the server cannot be reached');
    return action + ' failed: ' + meaning + (serverText ? '. Server says: \u201c' + serverText + '\u201d' : '') + '.';
  }

  /* An export is a job on the server: start it (or join the one under way), follow its
     progress, then download it: from S3 by its presigned link, or from this app with the token. */
  function exportZip() {
    $('#export').prop('disabled', true);
    D.setStatus($adminStatus, 'Asking for an export\u2026', 'busy');
    adminJSON(urls.exports, { method: 'POST' })
      .then(followExport)
      .catch(function (err) {
        var text = err.failed ? 'Export failed: ' + (err.text || 'the server gave no reason') + '.'
          : adminError(err.status || 0, err.text, 'Export');
        D.setStatus($adminStatus, text, 'error');
      })
      .then(function () { $('#export').prop('disabled', false); });
  }

  /* The JSON of an admin request; a failure throws {status, text}. */
  function adminJSON(url, options) {
    var init = $.extend({ headers: { Authorization: 'Bearer ' + token() } }, options);
    return window.fetch(url, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) { throw { status: response.status, text: body.error }; }
        return body;
      });
    });
  }

  function followExport(job) {
    if (job.state === 'done') { return downloadExport(job); }
    if (job.state === 'failed') { throw { failed: true, text: job.error }; }
    var progress = job.total ? ': ' + job.done + ' of ' + job.total + ' drawings' : '';
    D.setStatus($adminStatus, 'Export ' + job.state + progress + '\u2026', 'busy');
    return new Promise(function (resolve) { window.setTimeout(resolve, EXPORT_POLL_MS); })
      .then(function () { return adminJSON(job.url); })
      .then(followExport);
  }

  function downloadExport(job) {
    var size = job.bytes ? ' (' + Math.round(job.bytes / 1024) + ' KB)' : '';
    if (/^https?:/.test(job.download)) {   // a presigned link: S3 sends it as an attachment
      followLink(job.download);
      D.setStatus($adminStatus, 'Export ready; downloading' + size + '.', 'success');
      return null;
    }
    return window.fetch(job.download, { headers: { Authorization: 'Bearer ' + token() } })
      .then(function (response) {
        if (!response.ok) { throw { status: response.status }; }
        return response.blob();
      })
      .then(function (blob) {
        download(blob, 'digits-dataset.zip');
        D.setStatus($adminStatus, 'Export downloaded' + size + '.', 'success');
      });
  }

  function followLink(url) {
    var link = document.createElement('a');
    link.href = url;
    document.body.appendChild(link);
    link.click();
    link.remove();
  }

  function download(blob, filename) {
    var url = window.URL.createObjectURL(blob);
    var link = document.createElement('a');
    link.href = url;
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { window.URL.revokeObjectURL(url); }, 10000);
  }

  function remove($button) {
    var $figure = $button.closest('figure');
    var name = $figure.attr('data-name');
    if (!window.confirm('Delete drawing ' + name + '? This cannot be undone.')) { return; }
    $button.prop('disabled', true);
    $.ajax({
      url: $button.attr('data-url'),
      method: 'DELETE',
      headers: { Authorization: 'Bearer ' + token() },
      dataType: 'json'
    }).done(function () {
      $figure.remove();
      D.setStatus($adminStatus, 'Deleted ' + name + '.', 'success');
      load(state.page);   // the count and the pages changed, and the next drawing moves up
    }).fail(function (xhr) {
      $button.prop('disabled', false);
      var text = xhr.responseJSON && xhr.responseJSON.error;
      D.setStatus($adminStatus, adminError(xhr.status, text, 'Delete'), 'error');
      $('#admin').prop('open', true);
    });
  }

  /* ---------- wiring ---------- */

  $('#label-filter').on('change', function () {
    state.label = $(this).val();
    state.page = 1;
    load(1);
  });
  $('#filter-form').on('submit', function (event) { event.preventDefault(); });
  $('#prev').on('click', function () { load(state.page - 1); });
  $('#next').on('click', function () { load(state.page + 1); });
  $('#admin-form').on('submit', function (event) {
    event.preventDefault();
    setToken($.trim($('#admin-token').val()));
  });
  $('#forget-token').on('click', function () { setToken(''); });
  $('#export').on('click', exportZip);
  $('#gallery').on('click', 'button.delete', function () { remove($(this)); });

  if (token()) { $('#admin').prop('open', true); }
  showAdmin();
  load(1);
}(window, window.jQuery));

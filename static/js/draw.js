/*
 * DigitPad: the drawing surface shared by the Predict and Collect pages.
 *
 * The drawing is kept as a list of strokes in a fixed 200x200 space, not as
 * pixels. That gives undo for free, lets the on-screen canvas be redrawn sharp
 * at any size and devicePixelRatio, and lets the export be rendered afresh on an
 * offscreen canvas that is exactly 200x200, whatever the screen looks like.
 */
(function (window) {
  'use strict';

  var SIZE = 200;           // logical size of the drawing and of the exported PNG
  var MIN_STEP = 0.75;      // ignore pointer jitter smaller than this (logical px)

  function DigitPad(canvas, options) {
    options = options || {};
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.brush = options.brush || 16;
    this.onChange = options.onChange || function () {};
    this.strokes = [];
    this.current = null;       // the stroke being drawn, until the pointer lifts
    this.pointerId = null;     // only one pointer draws at a time (ignore a resting palm)
    this.frame = 0;
    this._listen();
    this.resize();
  }

  DigitPad.SIZE = SIZE;

  DigitPad.prototype.isEmpty = function () {
    return this.strokes.length === 0 && !this.current;
  };

  DigitPad.prototype.setBrush = function (width) {
    // Applies to the next stroke; strokes already drawn keep their own width.
    this.brush = Number(width);
  };

  DigitPad.prototype.undo = function () {
    if (!this.strokes.length) { return; }
    this.strokes.pop();
    this._redraw();
    this.onChange('undo');
  };

  DigitPad.prototype.clear = function () {
    var had = !this.isEmpty();
    this.strokes = [];
    this.current = null;
    this._redraw();
    if (had) { this.onChange('clear'); }
  };

  /* The drawing as a data URL of a 200x200 PNG: white ground, black ink. */
  DigitPad.prototype.toDataURL = function () {
    var off = document.createElement('canvas');
    off.width = SIZE;
    off.height = SIZE;
    paint(off.getContext('2d'), 1, this._allStrokes());
    return off.toDataURL('image/png');
  };

  /* Match the backing store to the displayed size times devicePixelRatio, so lines stay crisp. */
  DigitPad.prototype.resize = function () {
    var ratio = window.devicePixelRatio || 1;
    var side = Math.max(1, Math.round(this.canvas.getBoundingClientRect().width * ratio));
    if (this.canvas.width !== side || this.canvas.height !== side) {
      this.canvas.width = side;
      this.canvas.height = side;
    }
    this._redraw();
  };

  DigitPad.prototype._allStrokes = function () {
    return this.current ? this.strokes.concat([this.current]) : this.strokes;
  };

  DigitPad.prototype._redraw = function () {
    paint(this.ctx, this.canvas.width / SIZE, this._allStrokes());
  };

  /* Coalesce redraws to one per animation frame: pointermove can fire far more often. */
  DigitPad.prototype._scheduleRedraw = function () {
    var self = this;
    if (this.frame) { return; }
    this.frame = window.requestAnimationFrame(function () {
      self.frame = 0;
      self._redraw();
    });
  };

  DigitPad.prototype._point = function (event) {
    var rect = this.canvas.getBoundingClientRect();
    var x = (event.clientX - rect.left) * SIZE / rect.width;
    var y = (event.clientY - rect.top) * SIZE / rect.height;
    return [clamp(x, 0, SIZE), clamp(y, 0, SIZE)];
  };

  DigitPad.prototype._addPoint = function (event) {
    var points = this.current.points;
    var p = this._point(event);
    var last = points[points.length - 1];
    if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) >= MIN_STEP) {
      points.push(p);
    }
  };

  DigitPad.prototype._listen = function () {
    var self = this;
    var canvas = this.canvas;

    canvas.addEventListener('pointerdown', function (event) {
      if (self.pointerId !== null) { return; }
      if (event.pointerType === 'mouse' && event.button !== 0) { return; }
      event.preventDefault();
      self.pointerId = event.pointerId;
      // Capture, so a stroke that leaves the canvas keeps drawing along its edge
      // and its pointerup still reaches us.
      try { canvas.setPointerCapture(event.pointerId); } catch (e) { /* synthetic events */ }
      self.current = { width: self.brush, points: [self._point(event)] };
      self._scheduleRedraw();
    });

    canvas.addEventListener('pointermove', function (event) {
      if (event.pointerId !== self.pointerId || !self.current) { return; }
      event.preventDefault();
      // Coalesced events carry the positions the browser merged into this one
      // event: without them fast strokes turn into straight polygon edges.
      var events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
      if (!events.length) { events = [event]; }
      for (var i = 0; i < events.length; i++) { self._addPoint(events[i]); }
      self._scheduleRedraw();
    });

    function finish(event) {
      if (event.pointerId !== self.pointerId) { return; }
      self.pointerId = null;
      if (!self.current) { return; }
      self.strokes.push(self.current);
      self.current = null;
      self._redraw();
      self.onChange('stroke');
    }
    canvas.addEventListener('pointerup', finish);
    canvas.addEventListener('pointercancel', finish);
    canvas.addEventListener('lostpointercapture', finish);
    // A long press on touch screens would otherwise open a context menu mid-stroke.
    canvas.addEventListener('contextmenu', function (event) { event.preventDefault(); });

    if (window.ResizeObserver) {
      new window.ResizeObserver(function () { self.resize(); }).observe(canvas);
    }
    window.addEventListener('resize', function () { self.resize(); });
  };

  /* Draw white ground and all strokes onto ctx, at `scale` device pixels per logical pixel. */
  function paint(ctx, scale, strokes) {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    ctx.setTransform(scale, 0, 0, scale, 0, 0);
    ctx.strokeStyle = '#000';
    ctx.fillStyle = '#000';
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    for (var i = 0; i < strokes.length; i++) { paintStroke(ctx, strokes[i]); }
  }

  /* Quadratic curves through the midpoints between samples: smooth, and still passes near every sample. */
  function paintStroke(ctx, stroke) {
    var pts = stroke.points;
    if (pts.length === 1) {
      // A tap is a dot, not nothing.
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.lineWidth = stroke.width;
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (var i = 1; i < pts.length - 1; i++) {
      var midX = (pts[i][0] + pts[i + 1][0]) / 2;
      var midY = (pts[i][1] + pts[i + 1][1]) / 2;
      ctx.quadraticCurveTo(pts[i][0], pts[i][1], midX, midY);
    }
    var last = pts[pts.length - 1];
    ctx.lineTo(last[0], last[1]);
    ctx.stroke();
  }

  function clamp(v, lo, hi) {
    return Math.min(hi, Math.max(lo, v));
  }

  /*
   * Page-wide keyboard shortcuts. handlers: {undo, clear, digit(n), enter}.
   * Skipped while typing in a text field, and Enter is left alone on buttons
   * and links, where it already means "press this".
   */
  DigitPad.bindShortcuts = function (handlers) {
    document.addEventListener('keydown', function (event) {
      var target = event.target;
      if (isTextEntry(target) || event.altKey || event.repeat) { return; }
      var key = event.key;
      var command = event.ctrlKey || event.metaKey;
      // Backspace takes back one stroke, like Ctrl+Z: a stray press must not wipe the drawing.
      var undo = (command && (key === 'z' || key === 'Z') && !event.shiftKey) ||
        (!command && key === 'Backspace');
      if (undo) {
        if (handlers.undo) { event.preventDefault(); handlers.undo(); }
        return;
      }
      if (command) { return; }
      if ((key === 'Delete' || key === 'c' || key === 'C') && handlers.clear) {
        event.preventDefault();
        handlers.clear();
      } else if (/^[0-9]$/.test(key) && handlers.digit) {
        event.preventDefault();
        handlers.digit(Number(key));
      } else if (key === 'Enter' && handlers.enter && !isPressable(target)) {
        event.preventDefault();
        handlers.enter();
      }
    });
  };

  function isTextEntry(el) {
    if (!el || !el.tagName) { return false; }
    if (el.isContentEditable || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') { return true; }
    if (el.tagName !== 'INPUT') { return false; }
    return ['text', 'password', 'search', 'email', 'number', 'url', 'tel'].indexOf(el.type) !== -1;
  }

  function isPressable(el) {
    return !!el && (el.tagName === 'BUTTON' || el.tagName === 'A' ||
      (el.tagName === 'INPUT' && (el.type === 'checkbox' || el.type === 'radio')));
  }

  window.DigitPad = DigitPad;
}(window));

// The web release app: one script for a printer's panel (/panel/DEVICE)
// and for phones and desktops (/release). It speaks the release API like
// any client; the session lives in an HttpOnly cookie the script never
// sees. Every word shown comes from the catalogue (/web/i18n/LANG.json).
'use strict';

(() => {
  const LANGUAGES = ['en', 'de'];
  // A release's progress is asked for at once, then after 100, 200 and
  // 400 ms (a job usually reaches the printer within them), then every
  // 500 ms.
  const POLL_FIRST_MS = 100;
  const POLL_MS = 500;
  // After the last job of a release is done, the panel logs out by itself.
  const LOGOUT_AFTER_DONE_MS = 8000;

  const $ = (id) => document.getElementById(id);
  let catalogue = {};
  const app = {
    mode: 'panel', // or 'phone'
    device: null,
    devices: [],
    site: '',
    pinOnly: false,
    method: 'card',
    user: null,
    idleSecs: 60,
    jobs: [],
    release: null,
    releasedAt: 0,
    pollDelay: POLL_FIRST_MS,
    timers: { idle: 0, poll: 0, logout: 0, message: 0 },
  };

  /** The catalogue's text for `key`, with `{name}` placeholders filled. */
  function t(key, params = {}) {
    let text = catalogue[key] ?? key;
    for (const [name, value] of Object.entries(params)) {
      text = text.split(`{${name}}`).join(String(value ?? ''));
    }
    return text;
  }

  function language() {
    const asked = new URLSearchParams(location.search).get('lang');
    const wanted = [asked, ...(navigator.languages || [navigator.language])]
      .filter(Boolean)
      .map((l) => l.slice(0, 2).toLowerCase());
    return wanted.find((l) => LANGUAGES.includes(l)) || 'en';
  }

  async function loadCatalogue() {
    const lang = language();
    const response = await fetch(`/web/i18n/${lang}.json`);
    catalogue = await response.json();
    document.documentElement.lang = catalogue.lang || lang;
    for (const el of document.querySelectorAll('[data-i18n]')) {
      el.textContent = t(el.dataset.i18n);
    }
    for (const el of document.querySelectorAll('[data-i18n-label]')) {
      el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    }
    document.title = t('title');
  }

  /** Calls the API; network failures come back as status 0. */
  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      return { status: 0, data: null, retryAfter: null };
    }
    let data = null;
    if (response.status !== 204) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    return { status: response.status, data, retryAfter: response.headers.get('Retry-After') };
  }

  function errorText(r) {
    if (r.status === 0) return t('error_network');
    const error = (r.data && r.data.error) || {};
    switch (error.code) {
      case 'invalid_credentials':
      case 'busy':
      case 'unauthorized':
      case 'unavailable':
        return t(`error_${error.code}`);
      case 'locked':
        return t('error_locked', { secs: r.retryAfter || '?' });
      case 'unknown_device':
        return t('error_unknown_device', { device: app.device });
      default:
        return t('error_other', { message: error.message || `HTTP ${r.status}` });
    }
  }

  /** Shows a message: an error stays until the next action, news goes by itself. */
  function say(text, kind = 'error') {
    const box = $('message');
    clearTimeout(app.timers.message);
    box.textContent = text;
    box.className = kind;
    box.hidden = !text;
    if (text && kind !== 'error') {
      app.timers.message = setTimeout(() => { box.hidden = true; }, 6000);
    }
  }

  function show(section) {
    for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== section;
    $('logout').hidden = !app.user;
  }

  /** Records how long a step took, for the benchmark (performance.measure). */
  function measure(name, start) {
    performance.measure(name, { start, end: performance.now() });
  }

  // --- choosing a printer (phone and desktop) -------------------------------

  function listPrinters() {
    const list = $('printers');
    list.replaceChildren();
    for (const device of app.devices) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = device.name || device.id;
      if (device.location) {
        const where = document.createElement('small');
        where.textContent = device.location;
        button.append(where);
      }
      button.addEventListener('click', () => pick(device.id));
      item.append(button);
      list.append(item);
    }
    show('choose');
  }

  function pick(id) {
    const device = app.devices.find((d) => d.id === id);
    if (!device) {
      app.device = id;
      say(t('error_unknown_device', { device: id }));
      return;
    }
    app.device = id;
    $('printer').textContent = device.name || device.id;
    showLogin();
  }

  // --- logging in ------------------------------------------------------------

  function methods() {
    // A phone has no card reader, also when a printer's QR code opened
    // its panel page there.
    const phone = app.mode === 'phone' || window.matchMedia('(max-width: 600px) and (pointer: coarse)').matches;
    return phone ? ['password', 'pin'] : ['card', 'pin', 'password'];
  }

  function showLogin() {
    show('login');
    const offered = methods();
    for (const tab of document.querySelectorAll('[role=tab]')) {
      tab.hidden = !offered.includes(tab.dataset.method);
    }
    $('pin-user-row').hidden = app.pinOnly;
    selectMethod(offered.includes(app.method) ? app.method : offered[0]);
  }

  function selectMethod(method) {
    app.method = method;
    for (const tab of document.querySelectorAll('[role=tab]')) {
      tab.setAttribute('aria-selected', String(tab.dataset.method === method));
    }
    for (const form of document.querySelectorAll('.login-form')) {
      form.hidden = form.dataset.method !== method;
    }
    focusLogin();
  }

  function focusLogin() {
    const field = {
      card: $('card'),
      pin: app.pinOnly || $('pin-user').value ? $('pin') : $('pin-user'),
      password: $('password-user').value ? $('password') : $('password-user'),
    }[app.method];
    if (field) field.focus();
  }

  function clearSecrets() {
    for (const id of ['card', 'pin', 'password']) $(id).value = '';
  }

  async function login(method, user, secret) {
    if (!secret) {
      focusLogin();
      return;
    }
    const started = performance.now();
    const body = { device: app.device, method, secret, session: 'cookie' };
    if (user) body.user = user;
    const r = await api('POST', '/api/v1/sessions', body);
    clearSecrets();
    if (r.status !== 201) {
      say(errorText(r));
      focusLogin();
      return;
    }
    app.user = r.data.user;
    app.idleSecs = r.data.idle_timeout_secs || 60;
    $('who').textContent = t('greeting', { name: app.user.display_name || app.user.id });
    say('');
    touch();
    await showJobs();
    measure('login_to_list', started);
  }

  /** Ends the session (when there is one) and goes back to the login. */
  async function logout(note = '', kind = 'info') {
    for (const timer of ['idle', 'poll', 'logout']) clearTimeout(app.timers[timer]);
    const had = app.user;
    app.user = null;
    app.jobs = [];
    app.release = null;
    $('who').textContent = '';
    if (had) await api('DELETE', '/api/v1/sessions/current');
    showLogin();
    say(note, kind);
  }

  /** Any touch or key keeps the session; a pause as long as the server's ends it. */
  function touch() {
    if (!app.user) return;
    clearTimeout(app.timers.idle);
    app.timers.idle = setTimeout(() => logout(t('logged_out_idle')), app.idleSecs * 1000);
  }

  // --- jobs -------------------------------------------------------------------

  function pagesText(job) {
    if (job.pages == null) return t('pages_unknown');
    if (job.pages_exact === false) return t('pages_about', { pages: job.pages });
    return job.pages === 1 ? t('pages_one') : t('pages_many', { pages: job.pages });
  }

  function timeText(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return '';
    const lang = document.documentElement.lang;
    const sameDay = when.toDateString() === new Date().toDateString();
    const options = sameDay
      ? { hour: '2-digit', minute: '2-digit' }
      : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
    return when.toLocaleString(lang, options);
  }

  function selectable(job) {
    return job.available !== false && (job.state === 'held' || job.state === 'printed');
  }

  async function showJobs() {
    const r = await api('GET', '/api/v1/jobs');
    if (r.status === 401) {
      await logout(t('error_unauthorized'), 'error');
      return;
    }
    if (r.status !== 200) {
      say(errorText(r));
      return;
    }
    app.jobs = r.data.jobs || [];
    const remote = r.data.remote;
    const note = $('remote-note');
    note.hidden = !(remote && remote.available === false);
    note.textContent = note.hidden ? '' : t('remote_unavailable', { reason: remote.reason || '' });
    renderJobs();
    show('jobs');
  }

  function renderJobs() {
    const list = $('job-list');
    list.replaceChildren();
    for (const job of app.jobs) {
      const item = document.createElement('li');
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.value = job.id;
      box.disabled = !selectable(job);
      box.setAttribute('aria-label', t('select_job', { name: job.name }));
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = job.name;
      const details = [pagesText(job)];
      if (job.color === 'color') details.push(t('color'));
      if (job.color === 'monochrome') details.push(t('monochrome'));
      details.push(timeText(job.submitted));
      if (job.site && job.site !== app.site) details.push(t('at_site', { site: job.site }));
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = details.join(' · ');
      label.append(box, name, meta);
      if (job.available === false) {
        item.classList.add('unavailable');
        label.append(status(t('not_available', { reason: job.reason || '' })));
      } else if (job.state !== 'held') {
        label.append(status(t(`state_${job.state}`)));
      }
      item.append(label);
      list.append(item);
    }
    $('no-jobs').hidden = app.jobs.length > 0;
    $('select-all').checked = false;
  }

  function status(text) {
    const span = document.createElement('span');
    span.className = 'status';
    span.textContent = text;
    return span;
  }

  function chosen() {
    return [...document.querySelectorAll('#job-list input:checked')].map((b) => b.value);
  }

  async function release() {
    const ids = chosen();
    if (ids.length === 0) {
      say(t('select_first'));
      return;
    }
    const started = performance.now();
    const body = { jobs: ids };
    if ($('mono').checked) body.color = 'mono';
    if ($('duplex').checked) body.sides = 'two-sided-long-edge';
    const r = await api('POST', '/api/v1/jobs/release', body);
    if (r.status !== 202) {
      if (r.status === 401) {
        await logout(t('error_unauthorized'), 'error');
      } else {
        say(errorText(r));
      }
      return;
    }
    say('');
    app.release = r.data.release;
    app.releasedAt = started;
    app.pollDelay = POLL_FIRST_MS;
    renderOutcomes(r.data.jobs || []);
    show('progress');
    measure('release_to_progress', started);
    poll();
  }

  function refusalText(reason) {
    if (reason.code === 'quota') {
      return t('refused_quota', { ...reason, period: t(`period_${reason.period}`) });
    }
    return t(`refused_${reason.code}`, reason);
  }

  function outcomeText(o) {
    switch (o.outcome) {
      case 'queued':
        return t('state_waiting');
      case 'refused':
        return o.reason ? refusalText(o.reason) : o.message;
      case 'printed_elsewhere':
        return t('outcome_printed_elsewhere', { site: o.site || '' });
      case 'unavailable':
        return t('outcome_unavailable', { message: o.message || '' });
      case 'not_found':
      case 'not_held':
      case 'not_recorded':
        return t(`outcome_${o.outcome}`);
      default:
        return o.message || o.outcome;
    }
  }

  function renderOutcomes(outcomes) {
    const list = $('progress-list');
    list.replaceChildren();
    for (const o of outcomes) {
      const item = document.createElement('li');
      item.dataset.id = o.id;
      item.dataset.state = o.outcome === 'queued' ? 'waiting' : 'refused';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = o.name || o.id;
      item.append(name, status(outcomeText(o)));
      for (const note of o.note_codes || []) {
        const line = document.createElement('span');
        line.className = 'meta';
        line.textContent = t(`note_${note.code}`, note);
        item.append(line);
      }
      list.append(item);
    }
  }

  async function poll() {
    clearTimeout(app.timers.poll);
    if (!app.release) return;
    const r = await api('GET', `/api/v1/releases/${encodeURIComponent(app.release)}`);
    if (r.status === 401) {
      await logout(t('error_unauthorized'), 'error');
      return;
    }
    if (r.status === 200) {
      for (const job of r.data.jobs || []) {
        const item = document.querySelector(`#progress-list li[data-id="${CSS.escape(job.id)}"]`);
        if (!item) continue;
        const reached = job.state === 'printing' || job.state === 'printed';
        if (reached && !['printing', 'printed'].includes(item.dataset.state)) {
          measure('release_to_printing', app.releasedAt);
        }
        item.dataset.state = job.state;
        let text = t(`state_${job.state}`);
        if (job.message && (job.state === 'failed' || job.state === 'returned')) {
          text += `: ${job.message}`;
        }
        item.querySelector('.status').textContent = text;
      }
      if (r.data.done) {
        app.release = null;
        app.timers.logout = setTimeout(() => logout(), LOGOUT_AFTER_DONE_MS);
        return;
      }
    }
    app.timers.poll = setTimeout(poll, app.pollDelay);
    app.pollDelay = Math.min(app.pollDelay * 2, POLL_MS);
  }

  async function remove() {
    const ids = chosen();
    if (ids.length === 0) {
      say(t('select_first'));
      return;
    }
    let deleted = 0;
    for (const id of ids) {
      const r = await api('DELETE', `/api/v1/jobs/${encodeURIComponent(id)}`);
      if (r.status === 204) deleted += 1;
      else say(errorText(r));
    }
    if (deleted) say(t('deleted', { count: deleted }), 'info');
    await showJobs();
  }

  // --- wiring -------------------------------------------------------------------

  function wire() {
    for (const tab of document.querySelectorAll('[role=tab]')) {
      tab.addEventListener('click', () => selectMethod(tab.dataset.method));
    }
    $('form-card').addEventListener('submit', (e) => {
      e.preventDefault();
      login('card', null, $('card').value.trim());
    });
    $('form-pin').addEventListener('submit', (e) => {
      e.preventDefault();
      login('pin', $('pin-user').value.trim() || null, $('pin').value.trim());
    });
    $('form-password').addEventListener('submit', (e) => {
      e.preventDefault();
      login('password', $('password-user').value.trim(), $('password').value);
    });
    for (const key of document.querySelectorAll('[data-digit]')) {
      key.addEventListener('click', () => {
        const pin = $('pin');
        pin.value = key.dataset.digit === 'back' ? pin.value.slice(0, -1) : pin.value + key.dataset.digit;
        pin.focus();
      });
    }
    // A card reader types wherever the focus is: on the card screen, it is
    // always the card field.
    document.addEventListener('keydown', () => {
      if (!$('login').hidden && app.method === 'card' && document.activeElement !== $('card')) {
        $('card').focus();
      }
    }, true);
    $('select-all').addEventListener('change', () => {
      for (const box of document.querySelectorAll('#job-list input:not(:disabled)')) {
        box.checked = $('select-all').checked;
      }
    });
    $('job-list').addEventListener('change', () => {
      const boxes = [...document.querySelectorAll('#job-list input:not(:disabled)')];
      $('select-all').checked = boxes.length > 0 && boxes.every((b) => b.checked);
    });
    $('release').addEventListener('click', release);
    $('delete').addEventListener('click', remove);
    $('logout').addEventListener('click', () => logout());
    $('done').addEventListener('click', () => logout());
    $('more').addEventListener('click', () => {
      clearTimeout(app.timers.logout);
      showJobs();
    });
    document.addEventListener('pointerdown', touch, true);
    document.addEventListener('keydown', touch, true);
  }

  async function start() {
    await loadCatalogue();
    wire();
    const r = await api('GET', '/api/v1/devices');
    if (r.status !== 200) {
      say(errorText(r));
      return;
    }
    app.devices = r.data.devices || [];
    app.pinOnly = Boolean(r.data.pin_only_login);
    app.site = r.data.site || '';
    const panel = location.pathname.match(/^\/panel\/([^/]+)$/);
    if (panel) {
      app.mode = 'panel';
      pick(decodeURIComponent(panel[1]));
    } else {
      app.mode = 'phone';
      app.method = 'password';
      document.body.classList.add('phone');
      listPrinters();
    }
  }

  start();
})();

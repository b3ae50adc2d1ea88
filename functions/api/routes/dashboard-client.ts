/**
 * The dashboard's browser script, served as /ui/app.js. Plain modern JavaScript, no build step: it
 * polls the API (jobs list every 2 s, a job's status every second while it runs), streams a job's
 * results to draw its charts and table, and sends the token the user gives as a bearer header.
 * Kept as a string so the Lambda bundle carries it; it avoids backticks so it can live in one.
 */
export const DASHBOARD_CLIENT = String.raw`
const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const TOKEN_KEY = 'fanout-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';

function showError(message) {
  const el = $('error');
  el.textContent = message || '';
  el.hidden = !message;
}

function askForToken() {
  return new Promise((resolve) => {
    $('auth').hidden = false;
    $('token').focus();
    $('auth-form').onsubmit = (event) => {
      event.preventDefault();
      token = $('token').value.trim();
      sessionStorage.setItem(TOKEN_KEY, token);
      $('auth').hidden = true;
      resolve();
    };
  });
}

async function api(path, init) {
  for (;;) {
    const headers = Object.assign({}, (init && init.headers) || {});
    if (token) headers.authorization = 'Bearer ' + token;
    const res = await fetch(path, Object.assign({}, init || {}, { headers }));
    if (res.status === 401) {
      await askForToken();
      continue;
    }
    if (!res.ok) {
      let detail = res.status + ' ' + res.statusText;
      try { detail = (await res.json()).detail || detail; } catch {}
      throw new Error(detail);
    }
    return res;
  }
}

const el = (tag, attrs, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
};

function age(iso) {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function rate(job) {
  const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
  const seconds = Math.max(0.001, (end - Date.parse(job.createdAt)) / 1000);
  return Math.round(job.done / seconds);
}

/* ---- jobs page ---- */

async function refreshJobs() {
  try {
    const { jobs } = await (await api('/jobs?limit=50')).json();
    const body = $('jobs-body');
    body.replaceChildren();
    for (const job of jobs) {
      const tr = el('tr', { 'data-job-id': job.jobId });
      const link = el('a', { href: '/ui/jobs/' + job.jobId }, job.jobId.slice(0, 8) + '…' + job.jobId.slice(-6));
      const td = el('td');
      td.append(link);
      tr.append(td);
      tr.append(el('td', { class: 'state-' + job.state }, job.state));
      const bar = el('span', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(job.total), 'aria-valuenow': String(job.done), 'aria-label': 'progress' });
      const fill = el('span');
      fill.style.width = (job.total ? (100 * job.done) / job.total : 0) + '%';
      bar.append(fill);
      const barCell = el('td');
      barCell.append(bar);
      tr.append(barCell);
      tr.append(el('td', { class: 'done' }, job.done + ' / ' + job.total));
      tr.append(el('td', { class: 'succeeded' }, job.succeeded));
      tr.append(el('td', { class: 'failed' }, job.failed));
      tr.append(el('td', {}, rate(job) + ' URLs/s'));
      tr.append(el('td', {}, age(job.createdAt)));
      body.append(tr);
    }
    showError('');
  } catch (error) {
    showError('Could not load jobs: ' + error.message);
  }
}

function initJobs() {
  $('submit-form').onsubmit = async (event) => {
    event.preventDefault();
    const form = event.target;
    const file = $('file').files[0];
    const text = file ? await file.text() : $('urls').value;
    const query = new URLSearchParams();
    for (const name of ['concurrency', 'perHost', 'timeoutMs', 'retries', 'bodies']) if (form[name].value !== '') query.set(name, form[name].value);
    const first = text.trim().charAt(0);
    const type = first === '{' && !/^\s*\{\s*"urls"/.test(text) ? 'application/x-ndjson' : first === '{' || first === '[' ? 'application/json' : 'text/plain';
    try {
      const res = await api('/jobs?' + query, { method: 'POST', headers: { 'content-type': type }, body: text });
      const accepted = await res.json();
      $('submit-result').textContent = 'Submitted job ' + accepted.jobId + ' (' + (accepted.total ?? '…') + ' URLs).';
      $('urls').value = '';
      refreshJobs();
    } catch (error) {
      $('submit-result').textContent = 'Refused: ' + error.message;
    }
  };
  refreshJobs();
  setInterval(refreshJobs, 2000);
}

/* ---- job page ---- */

const jobId = document.body.dataset.jobId;
const PAGE_SIZE = 50;
const MAX_RECORDS = 100000;
let records = [];
let pageIndex = 0;
let lastStatus;

function svgBars(entries, color) {
  const width = 300, row = 18, height = Math.max(row, entries.length * row);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', entries.map((e) => e[0] + ': ' + e[1]).join(', ') || 'no data');
  entries.forEach(([label, value], i) => {
    const rect = document.createElementNS(svg.namespaceURI, 'rect');
    rect.setAttribute('x', '90');
    rect.setAttribute('y', String(i * row + 3));
    rect.setAttribute('height', String(row - 6));
    rect.setAttribute('width', String(Math.max(1, ((width - 150) * value) / max)));
    rect.setAttribute('fill', color);
    const name = document.createElementNS(svg.namespaceURI, 'text');
    name.setAttribute('x', '0');
    name.setAttribute('y', String(i * row + 13));
    name.textContent = label;
    const count = document.createElementNS(svg.namespaceURI, 'text');
    count.setAttribute('x', String(95 + ((width - 150) * value) / max));
    count.setAttribute('y', String(i * row + 13));
    count.textContent = String(value);
    svg.append(rect, name, count);
  });
  return svg;
}

function renderStatus(s) {
  lastStatus = s;
  $('state').textContent = s.state;
  $('state').className = 'state-' + s.state;
  $('done').textContent = s.done;
  $('total').textContent = s.total;
  $('succeeded').textContent = s.succeeded;
  $('failed').textContent = s.failed;
  $('progress').max = Math.max(1, s.total);
  $('progress').value = s.done;
  const running = s.state === 'running' || s.state === 'queued' || s.state === 'planning';
  const r = rate(s);
  $('eta').textContent = running ? (r > 0 ? Math.round((s.total - s.done) / r) + ' s' : '–') : 'done';
  $('cancel').disabled = !running;
  $('p50').textContent = s.latencyMs.p50 === null ? '–' : s.latencyMs.p50 + ' ms';
  $('p95').textContent = s.latencyMs.p95 === null ? '–' : s.latencyMs.p95 + ' ms';
  $('p99').textContent = s.latencyMs.p99 === null ? '–' : s.latencyMs.p99 + ' ms';
  // The wait for a connection slot, apart from the latency; named when it took longer than the requests.
  const q = s.queuedMs || { p50: null, p95: null };
  $('q50').textContent = q.p50 === null ? '–' : q.p50 + ' ms';
  $('q95').textContent = q.p95 === null ? '–' : q.p95 + ' ms';
  const held = s.queuedSeconds > 0 && s.queuedSeconds >= (s.durationSeconds || 0);
  $('held').textContent = held ? '(more waiting than fetching: raise perHost' + (s.options ? ', now ' + s.options.perHost : '') + ')' : '';
  const classes = {};
  for (const [code, n] of Object.entries(s.byStatus)) classes[code[0] + 'xx'] = (classes[code[0] + 'xx'] || 0) + n;
  const noResponse = s.done - Object.values(s.byStatus).reduce((a, b) => a + b, 0);
  if (noResponse > 0) classes['none'] = noResponse;
  $('chart-status').replaceChildren(svgBars(Object.entries(classes).sort(), '#0a58ca'));
  $('chart-errors').replaceChildren(svgBars(Object.entries(s.byError).sort((a, b) => b[1] - a[1]), '#b3261e'));
  const select = document.querySelector('#filters [name=error]');
  for (const code of Object.keys(s.byError)) {
    if (![...select.options].some((o) => o.value === code)) select.append(el('option', { value: code }, code));
  }
  return running;
}

/*
 * Results come in pages (always on AWS): each page's Fanout-Next-Cursor header names the next one.
 * Calls onPage(res) for each page until there is none or onPage returns false; returns 'links' when
 * the API answers with links to the result files instead (results too large for the browser).
 */
async function eachResultPage(query, onPage) {
  const base = '/jobs/' + jobId + '/results';
  const seen = new Set();
  let cursor = null;
  for (;;) {
    const q = new URLSearchParams(query);
    if (cursor) q.set('cursor', cursor);
    const qs = q.toString();
    const res = await api(base + (qs ? '?' + qs : ''));
    if ((res.headers.get('content-type') || '').startsWith('application/json')) return 'links';
    const more = await onPage(res);
    cursor = res.headers.get('fanout-next-cursor');
    if (!cursor || more === false || seen.has(cursor)) return 'done';
    seen.add(cursor);
  }
}

async function loadRecords() {
  const next = [];
  const outcome = await eachResultPage('', async (res) => {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line && next.length < MAX_RECORDS) next.push(JSON.parse(line));
      }
    }
    return next.length < MAX_RECORDS;
  });
  if (outcome === 'links') {
    $('records-count').textContent = 'Results are too large to show here: read them with fanout results.';
    records = [];
    return;
  }
  records = next;
  renderCharts();
  renderRecords();
}

function renderCharts() {
  const bins = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 15000, Infinity];
  const counts = bins.map(() => 0);
  const perSecond = new Map();
  for (const r of records) {
    if (r.attempts === 0) continue;
    counts[bins.findIndex((b) => r.durationMs <= b)]++;
    const second = Math.floor(Date.parse(r.startedAt) / 1000);
    perSecond.set(second, (perSecond.get(second) || 0) + 1);
  }
  const labels = bins.map((b, i) => (b === Infinity ? '> ' + bins[i - 1] : '≤ ' + b) + ' ms');
  $('chart-latency').replaceChildren(svgBars(labels.map((l, i) => [l, counts[i]]), '#5b3cc4'));
  const seconds = [...perSecond.keys()].sort((a, b) => a - b);
  const start = seconds[0];
  $('chart-throughput').replaceChildren(svgBars(seconds.slice(0, 30).map((s) => ['+' + (s - start) + ' s', perSecond.get(s)]), '#137333'));
  const slowest = [...records].filter((r) => r.attempts > 0).sort((a, b) => b.durationMs - a.durationMs).slice(0, 10);
  $('slowest').replaceChildren(...slowest.map((r) => el('li', {}, r.durationMs + ' ms  ' + r.url)));
}

function filtered() {
  const f = document.getElementById('filters');
  const ok = f.ok.value, status = f.status.value.trim(), error = f.error.value, host = f.host.value.trim().toLowerCase();
  return records.filter((r) => {
    if (ok !== '' && String(r.ok) !== ok) return false;
    if (status !== '' && String(r.status) !== status) return false;
    if (error !== '' && (!r.error || r.error.code !== error)) return false;
    if (host !== '') {
      try { if (!new URL(r.url).host.toLowerCase().includes(host)) return false; } catch { return false; }
    }
    return true;
  });
}

function renderRecords() {
  const rows = filtered();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  pageIndex = Math.min(pageIndex, pages - 1);
  $('records-count').textContent = rows.length + ' of ' + records.length + ' records';
  $('page').textContent = 'page ' + (pageIndex + 1) + ' of ' + pages;
  $('prev').disabled = pageIndex === 0;
  $('next').disabled = pageIndex >= pages - 1;
  const body = $('records-body');
  body.replaceChildren();
  for (const r of rows.slice(pageIndex * PAGE_SIZE, (pageIndex + 1) * PAGE_SIZE)) {
    const tr = el('tr', { class: r.ok ? 'record' : 'record failed' });
    tr.append(el('td', {}, r.index), el('td', { class: 'url' }, r.url), el('td', {}, r.status ?? '–'), el('td', {}, r.error ? r.error.code : ''), el('td', {}, r.attempts), el('td', {}, r.durationMs), el('td', {}, r.bytes));
    body.append(tr);
  }
}

async function download(query, name) {
  const parts = [];
  const outcome = await eachResultPage(query, async (res) => { parts.push(await res.blob()); });
  if (outcome === 'links') {
    showError('These results are too large to download here: use fanout results ' + jobId);
    return;
  }
  const blob = new Blob(parts, { type: 'application/x-ndjson' });
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

async function initJob() {
  for (const input of document.querySelectorAll('#filters input, #filters select')) {
    input.addEventListener('input', () => { pageIndex = 0; renderRecords(); });
  }
  $('prev').onclick = () => { pageIndex--; renderRecords(); };
  $('next').onclick = () => { pageIndex++; renderRecords(); };
  $('download').onclick = () => download('', jobId + '.ndjson');
  $('download-failed').onclick = () => download('ok=false', jobId + '-failed.ndjson');
  $('cancel').onclick = async () => {
    $('cancel').disabled = true;
    try { await api('/jobs/' + jobId, { method: 'DELETE' }); } catch (error) { showError('Cancel failed: ' + error.message); }
  };
  let loadedAtDone = -1;
  const tick = async () => {
    try {
      const status = await (await api('/jobs/' + jobId)).json();
      const running = renderStatus(status);
      if (status.done !== loadedAtDone && (!running || status.done - loadedAtDone >= 500 || loadedAtDone < 0)) {
        loadedAtDone = status.done;
        await loadRecords();
      }
      showError('');
      if (running) setTimeout(tick, 1000);
    } catch (error) {
      showError('Could not load the job: ' + error.message);
      setTimeout(tick, 3000);
    }
  };
  tick();
}

/* ---- schedules ---- */

function pct(run) {
  return run.total ? Math.round((1000 * run.succeeded) / run.total) / 10 : 0;
}

function seconds(ms) {
  return ms === null || ms === undefined ? '–' : (ms / 1000).toFixed(1) + ' s';
}

function changeWords(changes) {
  if (!changes) return 'no baseline';
  const parts = [];
  if (changes.new) parts.push(changes.new + ' new');
  if (changes.changed) parts.push(changes.changed + ' changed');
  if (changes.newlyFailing) parts.push(changes.newlyFailing + ' newly failing');
  if (changes.recovered) parts.push(changes.recovered + ' recovered');
  return parts.length ? parts.join(', ') : 'no change';
}

/* One column per run, oldest on the left: the bar is the success rate; red marks newly failing, amber changed. */
function runsChart(runs) {
  const ns = 'http://www.w3.org/2000/svg';
  const width = Math.max(320, runs.length * 56 + 40);
  const height = 180;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  svg.setAttribute('role', 'img');
  svg.setAttribute('id', 'runs-svg');
  svg.setAttribute('aria-label', runs.map((r) => r.createdAt + ': ' + pct(r) + '% ok, ' + seconds(r.durationMs) + ', ' + changeWords(r.changes)).join('; ') || 'no runs');
  runs.forEach((run, i) => {
    const x = 30 + i * 56;
    const h = Math.round((pct(run) / 100) * 110);
    const g = document.createElementNS(ns, 'g');
    g.setAttribute('class', 'run');
    g.setAttribute('data-job-id', run.jobId);
    const back = document.createElementNS(ns, 'rect');
    back.setAttribute('x', x); back.setAttribute('y', 20); back.setAttribute('width', 40); back.setAttribute('height', 110); back.setAttribute('fill', '#eaeef2');
    const bar = document.createElementNS(ns, 'rect');
    bar.setAttribute('x', x); bar.setAttribute('y', 130 - h); bar.setAttribute('width', 40); bar.setAttribute('height', h);
    bar.setAttribute('fill', run.changes && run.changes.newlyFailing ? '#b3261e' : run.changes && run.changes.changed ? '#b26a00' : '#137333');
    const rate = document.createElementNS(ns, 'text');
    rate.setAttribute('x', x); rate.setAttribute('y', 14); rate.textContent = pct(run) + '%';
    const dur = document.createElementNS(ns, 'text');
    dur.setAttribute('x', x); dur.setAttribute('y', 146); dur.textContent = seconds(run.durationMs);
    const ch = document.createElementNS(ns, 'text');
    ch.setAttribute('x', x); ch.setAttribute('y', 162);
    ch.textContent = run.changes ? '±' + (run.changes.changed + run.changes.new) + ' ✗' + run.changes.newlyFailing : '';
    g.append(back, bar, rate, dur, ch);
    svg.append(g);
  });
  return svg;
}

async function initSchedules() {
  try {
    const { schedules } = await (await api('/schedules')).json();
    const body = $('schedules-body');
    body.replaceChildren();
    for (const s of schedules) {
      const tr = el('tr', { 'data-schedule': s.name });
      const td = el('td');
      td.append(el('a', { href: '/ui/schedules/' + encodeURIComponent(s.name) }, s.name));
      tr.append(td);
      tr.append(el('td', {}, s.expression));
      tr.append(el('td', {}, s.nextRun || (s.enabled ? '–' : 'disabled')));
      tr.append(el('td', {}, s.lastRun ? s.lastRun.state + ', ' + pct(s.lastRun) + '% ok, ' + changeWords(s.lastRun.changes) : 'never run'));
      body.append(tr);
    }
    showError('');
  } catch (error) {
    showError('Could not load schedules: ' + error.message);
  }
}

async function initSchedule() {
  const name = document.body.dataset.schedule;
  try {
    const { runs } = await (await api('/schedules/' + encodeURIComponent(name) + '/runs?limit=30')).json();
    $('runs-chart').replaceChildren(runsChart(runs.slice().reverse()));
    const body = $('runs-body');
    body.replaceChildren();
    for (const run of runs) {
      const tr = el('tr', { 'data-job-id': run.jobId });
      const td = el('td');
      td.append(el('a', { href: '/ui/jobs/' + run.jobId }, run.createdAt));
      tr.append(td);
      tr.append(el('td', { class: 'state-' + run.state }, run.state));
      tr.append(el('td', { class: 'rate' }, pct(run) + '%'));
      tr.append(el('td', {}, seconds(run.durationMs)));
      const c = run.changes || {};
      tr.append(el('td', {}, run.changes ? c.new : '–'));
      tr.append(el('td', {}, run.changes ? c.changed : '–'));
      tr.append(el('td', { class: 'failed' }, run.changes ? c.newlyFailing : '–'));
      tr.append(el('td', {}, run.changes ? c.recovered : '–'));
      body.append(tr);
    }
    $('runs-count').textContent = runs.length + ' runs';
    showError('');
  } catch (error) {
    showError('Could not load the runs: ' + error.message);
  }
}

if (page === 'jobs') initJobs();
if (page === 'job') initJob();
if (page === 'schedules') initSchedules();
if (page === 'schedule') initSchedule();
`;

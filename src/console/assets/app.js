// Herald's console: shows what the admin API returns, nothing it computes itself. The admin
// token lives in this tab's sessionStorage and travels only in the Authorization header
// (never in a URL); server-sent events are read with fetch() because EventSource cannot send
// a header. All data is written with textContent, never as HTML.
'use strict';

const TOKEN_KEY = 'herald.adminToken';
const MAX_TAIL = 200;
const MAX_STREAM_BUFFER = 16 * 1024 * 1024;
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);
let overview = null;
let watching = null;
let tailing = null;

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers(extra) {
  const all = Object.assign({}, extra);
  const t = token();
  if (t) all.Authorization = 'Bearer ' + t;
  return all;
}

async function api(path, options) {
  const opts = Object.assign({}, options);
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) throw new Unauthorized('unauthorized');
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || response.status + ' ' + response.statusText);
  return body;
}

// Reads `text/event-stream` from `path` and calls onEvent(name, data) per event, until the
// stream ends or `signal` aborts.
async function stream(path, signal, onOpen, onEvent) {
  const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (response.status === 401) throw new Unauthorized('unauthorized');
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || response.status + ' ' + response.statusText);
  }
  onOpen();
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    if (buffer.length > MAX_STREAM_BUFFER) throw new Error('an event was too large to show');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function cell(row, content) {
  const td = el('td');
  if (content instanceof Node) td.append(content);
  else td.textContent = content === undefined || content === null ? '—' : String(content);
  row.append(td);
  return td;
}

// Names each cell after its column, for the one-card-per-row layout on a phone.
function labelCells(table) {
  const names = [...table.tHead.rows[0].cells].map((th) => th.textContent);
  for (const row of table.tBodies[0].rows) {
    [...row.cells].forEach((td, i) => { if (names[i] && td.colSpan === 1) td.dataset.label = names[i]; });
  }
}

function num(value, digits) {
  return value === undefined || value === null ? '—' : Number(value).toFixed(digits);
}

function percent(ratio) {
  return ratio === undefined || ratio === null ? '—' : (ratio * 100).toFixed(1) + ' %';
}

// ---- views ----

function showView(name) {
  for (const button of document.querySelectorAll('#nav [data-view]')) {
    if (button.dataset.view === name) button.setAttribute('aria-current', 'page');
    else button.removeAttribute('aria-current');
  }
  for (const section of document.querySelectorAll('.view')) {
    section.hidden = section.id !== 'view-' + name;
  }
  if (name === 'graph') loadGraph().catch(failed);
  if (name === 'charts') loadCharts().catch(failed);
  if (name === 'deadletters') fillTriggerChoices();
  if (name === 'tail') fillBrokerChoices();
}

function showLogin(message) {
  stopStreams();
  $('nav').hidden = true;
  for (const section of document.querySelectorAll('.view')) section.hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('live').textContent = '';
  $('token').focus();
}

function failed(error) {
  if (error instanceof Unauthorized) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('The token was refused: enter the admin token.');
  } else if (error.name !== 'AbortError') {
    $('live').textContent = 'Error: ' + error.message;
  }
}

function stopStreams() {
  if (watching) watching.abort();
  if (tailing) tailing.abort();
  watching = null;
  tailing = null;
}

async function open() {
  try {
    const first = await api('/stats/v1/overview');
    $('login').hidden = true;
    $('nav').hidden = false;
    renderOverview(first);
    showView('overview');
    watch();
  } catch (error) {
    if (error instanceof Unauthorized) {
      const tried = token() !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(tried ? 'The token was refused: enter the admin token.' : '');
    } else {
      failed(error);
    }
  }
}

function watch() {
  if (watching) watching.abort();
  const controller = new AbortController();
  watching = controller;
  stream('/stats/v1/watch', controller.signal, () => {}, (name, data) => {
    if (name === 'overview') renderOverview(JSON.parse(data));
  }).catch((error) => {
    failed(error);
    // Reconnect after a while unless the page stopped watching.
    if (watching === controller && !(error instanceof Unauthorized)) setTimeout(() => { if (watching === controller) watch(); }, 5000);
  });
}

// ---- overview ----

function renderOverview(data) {
  overview = data;
  $('rate-window').textContent = data.rateWindowSeconds;
  $('live').textContent = 'Live · updated ' + new Date().toLocaleTimeString();
  const brokers = $('brokers').tBodies[0];
  brokers.replaceChildren();
  for (const b of data.brokers) {
    const row = el('tr', null, { 'data-key': b.namespace + '/' + b.name });
    cell(row, b.namespace + '/' + b.name);
    cell(row, b.ready ? 'Ready' : 'Not ready');
    cell(row, num(b.ingressPerSecond, 2));
    cell(row, num(b.logRecords, 0));
    cell(row, b.triggers);
    brokers.append(row);
  }
  labelCells($('brokers'));
  const triggers = $('triggers').tBodies[0];
  triggers.replaceChildren();
  for (const t of data.triggers) {
    const key = t.namespace + '/' + t.name;
    const row = el('tr', null, { 'data-key': key });
    cell(row, key);
    cell(row, t.broker);
    cell(row, el('code', t.filter));
    cell(row, t.subscriber);
    cell(row, num(t.deliveredPerSecond, 2));
    cell(row, percent(t.successRatio));
    cell(row, num(t.lagEvents, 0));
    cell(row, num(t.lagSeconds, 1));
    const parked = el('button', t.parkedEvents === null || t.parkedEvents === undefined ? '—' : t.parkedEvents, {
      type: 'button', class: 'link', 'aria-label': 'Dead letters of ' + key + ': ' + (t.parkedEvents ?? 'unknown'),
    });
    parked.addEventListener('click', () => {
      showView('deadletters');
      $('dl-trigger').value = key;
      loadParked().catch(failed);
    });
    cell(row, parked);
    const errors = t.recentErrors || [];
    if (errors.length) {
      const details = el('details');
      details.append(el('summary', errors.length + ' recent'));
      const list = el('ul');
      for (const e of errors.slice().reverse()) {
        list.append(el('li', e.time + ' · ' + e.eventId + ' · attempt ' + e.attempt + ' · ' + (e.status ?? 'no answer') + ' · ' + e.error));
      }
      details.append(list);
      cell(row, details);
    } else {
      cell(row, 'none');
    }
    triggers.append(row);
  }
  labelCells($('triggers'));
  const shown = $('dl-trigger').value;
  if (!$('view-deadletters').hidden && shown) {
    const t = data.triggers.find((x) => x.namespace + '/' + x.name === shown);
    if (t && t.parkedEvents !== shownParked) loadParked().catch(failed);
  }
}

// ---- graph ----

async function loadGraph() {
  const graph = await api('/stats/v1/graph');
  const svg = $('graph');
  svg.replaceChildren();
  const columns = [[], [], [], []];
  for (const node of graph.nodes) columns[Math.min(node.layer ?? 3, 3)].push(node);
  const where = new Map();
  const width = 240;
  const gap = 60;
  let rows = 1;
  columns.forEach((nodes, c) => {
    rows = Math.max(rows, nodes.length);
    nodes.forEach((node, r) => where.set(node.id, { x: 10 + c * (width + gap), y: 10 + r * 56 }));
  });
  svg.setAttribute('viewBox', '0 0 ' + (4 * width + 3 * gap + 20) + ' ' + (rows * 56 + 20));
  svg.setAttribute('width', String(4 * width + 3 * gap + 20));
  for (const edge of graph.edges) {
    const a = where.get(edge.from);
    const b = where.get(edge.to);
    if (!a || !b) continue;
    const line = document.createElementNS(SVG, 'path');
    line.setAttribute('d', 'M' + (a.x + width) + ' ' + (a.y + 20) + ' C' + (a.x + width + gap / 2) + ' ' + (a.y + 20) + ' ' + (b.x - gap / 2) + ' ' + (b.y + 20) + ' ' + b.x + ' ' + (b.y + 20));
    line.setAttribute('class', 'edge');
    svg.append(line);
  }
  for (const node of graph.nodes) {
    const at = where.get(node.id);
    const group = document.createElementNS(SVG, 'g');
    group.setAttribute('class', 'node kind-' + node.kind.toLowerCase());
    const box = document.createElementNS(SVG, 'rect');
    box.setAttribute('x', at.x); box.setAttribute('y', at.y);
    box.setAttribute('width', width); box.setAttribute('height', 40); box.setAttribute('rx', 6);
    const kind = document.createElementNS(SVG, 'text');
    kind.setAttribute('x', at.x + 8); kind.setAttribute('y', at.y + 15);
    kind.setAttribute('class', 'kind');
    kind.textContent = node.kind;
    const name = document.createElementNS(SVG, 'text');
    name.setAttribute('x', at.x + 8); name.setAttribute('y', at.y + 32);
    name.textContent = (node.namespace ? node.namespace + '/' : '') + node.name;
    group.append(box, kind, name);
    svg.append(group);
  }
  const edges = $('edges');
  edges.replaceChildren();
  const label = (id) => { const n = graph.nodes.find((x) => x.id === id); return n ? n.kind + ' ' + (n.namespace ? n.namespace + '/' : '') + n.name : id; };
  for (const edge of graph.edges) edges.append(el('li', label(edge.from) + ' → ' + label(edge.to) + ' (' + edge.label + ')'));
  if (graph.truncated) edges.append(el('li', 'The graph was cut short: too many objects.'));
}

// ---- dead letters ----

let shownParked = null;

function fillTriggerChoices() {
  const select = $('dl-trigger');
  const current = select.value;
  select.replaceChildren();
  for (const t of (overview ? overview.triggers : [])) {
    const key = t.namespace + '/' + t.name;
    select.append(el('option', key, { value: key }));
  }
  if (current) select.value = current;
}

function triggerPath() {
  const [namespace, name] = $('dl-trigger').value.split('/');
  return '/apis/eventing.knative.dev/v1/namespaces/' + encodeURIComponent(namespace) + '/triggers/' + encodeURIComponent(name);
}

async function loadParked() {
  if (!$('dl-trigger').value) fillTriggerChoices();
  if (!$('dl-trigger').value) return;
  const search = $('dl-search').value.trim();
  const list = await api(triggerPath() + '/deadletters' + (search ? '?search=' + encodeURIComponent(search) : ''));
  const t = overview && overview.triggers.find((x) => x.namespace + '/' + x.name === $('dl-trigger').value);
  shownParked = t ? t.parkedEvents : null;
  const checked = new Set(selectedIds());
  const body = $('parked').tBodies[0];
  body.replaceChildren();
  for (const item of list.items) {
    const row = el('tr', null, { 'data-id': item.id });
    const box = el('input', null, { type: 'checkbox', value: item.id, 'aria-label': 'Select ' + item.id });
    box.checked = checked.has(item.id);
    cell(row, box);
    cell(row, item.id);
    cell(row, item.event.type);
    cell(row, item.event.source);
    cell(row, item.event.id);
    cell(row, item.failure.attempts);
    cell(row, (item.failure.lastStatus ?? '') + ' ' + item.failure.lastError);
    cell(row, item.failure.parkedAt);
    const detail = el('button', 'Detail', { type: 'button', 'aria-label': 'Detail of ' + item.id });
    detail.addEventListener('click', () => showParked(item.id).catch(failed));
    cell(row, detail);
    body.append(row);
  }
  if (!list.items.length) {
    const row = el('tr');
    cell(row, search ? 'No parked event matches.' : 'No parked events.').colSpan = 9;
    body.append(row);
  }
  labelCells($('parked'));
}

async function showParked(id) {
  const item = await api(triggerPath() + '/deadletters/' + encodeURIComponent(id));
  $('dl-detail-title').textContent = 'Parked event ' + id;
  $('dl-detail-body').textContent = JSON.stringify(item, null, 2);
  $('dl-detail').hidden = false;
  $('dl-detail').focus();
}

function selectedIds() {
  return [...document.querySelectorAll('#parked input[type=checkbox]:checked')].map((b) => b.value);
}

function confirmAction(text) {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const done = (answer) => {
      $('confirm-yes').onclick = null;
      $('confirm-no').onclick = null;
      dialog.onclose = null;
      dialog.close();
      resolve(answer);
    };
    $('confirm-yes').onclick = () => done(true);
    $('confirm-no').onclick = () => done(false);
    dialog.onclose = () => done(false);
    dialog.showModal();
    $('confirm-no').focus();
  });
}

async function act(verb, all) {
  const ids = selectedIds();
  const trigger = $('dl-trigger').value;
  if (!trigger) return;
  if (!all && !ids.length) {
    $('dl-result').textContent = 'Select parked events first.';
    return;
  }
  const what = all ? 'every parked event of ' + trigger : ids.length + ' parked event(s) of ' + trigger;
  if (!(await confirmAction((verb === 'redrive' ? 'Redrive ' : 'Purge ') + what + '?'))) {
    $('dl-result').textContent = 'Cancelled.';
    return;
  }
  if (verb === 'redrive') {
    const report = await api(triggerPath() + '/deadletters/redrive', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(all ? { all: true } : { ids }),
    });
    $('dl-result').textContent = 'Redrive: ' + report.delivered.length + ' delivered, ' + report.parked.length + ' parked again, ' + report.deadLettered.length + ' dead-lettered, ' + report.notFound.length + ' not found.';
  } else {
    const query = all ? 'all=true' : 'ids=' + ids.map(encodeURIComponent).join(',');
    const report = await api(triggerPath() + '/deadletters?' + query, { method: 'DELETE' });
    $('dl-result').textContent = 'Purge: ' + report.purged.length + ' purged, ' + report.notFound.length + ' not found.';
  }
  $('dl-detail').hidden = true;
  await loadParked();
}

// ---- live tail ----

function fillBrokerChoices() {
  const select = $('tail-broker');
  const current = select.value;
  select.replaceChildren();
  for (const b of (overview ? overview.brokers : [])) {
    const key = b.namespace + '/' + b.name;
    select.append(el('option', key, { value: key }));
  }
  if (current) select.value = current;
}

function startTail() {
  if (tailing) tailing.abort();
  const [namespace, name] = $('tail-broker').value.split('/');
  if (!name) return;
  const filter = $('tail-filter').value.trim();
  let path = '/apis/eventing.knative.dev/v1/namespaces/' + encodeURIComponent(namespace) + '/brokers/' + encodeURIComponent(name) + '/events?follow=true';
  if (filter) path += '&filter=' + encodeURIComponent(filter);
  const controller = new AbortController();
  tailing = controller;
  const list = $('tail-events');
  list.replaceChildren();
  $('tail-status').textContent = 'Connecting…';
  stream(path, controller.signal, () => {
    $('tail-status').textContent = 'Tailing ' + namespace + '/' + name + (filter ? ' where ' + filter : '') + '.';
  }, (kind, data) => {
    if (kind === 'cloudevent') {
      const event = JSON.parse(data);
      const item = el('li', null, { 'data-id': event.id });
      item.append(el('strong', event.type), el('span', ' ' + event.source + ' · ' + event.id));
      const body = event.data !== undefined ? JSON.stringify(event.data) : (event.data_base64 ? '(binary data)' : '');
      if (body) item.append(el('pre', body));
      list.prepend(item);
      while (list.children.length > MAX_TAIL) list.lastChild.remove();
    } else if (kind === 'lagged') {
      list.prepend(el('li', data, { class: 'note' }));
    }
  }).then(() => {
    if (tailing === controller) $('tail-status').textContent = 'The tail ended.';
  }).catch((error) => {
    if (error.name === 'AbortError') return;
    if (error instanceof Unauthorized) failed(error);
    else $('tail-status').textContent = 'Refused: ' + error.message;
  });
}

// ---- charts ----

const COLORS = ['#1b6ac9', '#c9401b', '#2f9e44', '#9c36b5', '#e8590c', '#0b7285', '#5c940d', '#862e9c'];

function chart(title, series, unit) {
  const figure = el('figure', null, { class: 'chart' });
  figure.append(el('figcaption', title));
  const width = 560;
  const height = 180;
  let max = 0;
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const s of series) for (const [t, v] of s.points) { max = Math.max(max, v); t0 = Math.min(t0, t); t1 = Math.max(t1, t); }
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', title);
  const axis = document.createElementNS(SVG, 'path');
  axis.setAttribute('d', 'M40 10 V' + (height - 20) + ' H' + (width - 10));
  axis.setAttribute('class', 'axis');
  svg.append(axis);
  const top = document.createElementNS(SVG, 'text');
  top.setAttribute('x', 2); top.setAttribute('y', 16);
  top.textContent = max ? max.toPrecision(2) : '0';
  svg.append(top);
  const span = Math.max(t1 - t0, 1);
  const scale = max || 1;
  series.forEach((s, i) => {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', s.points.map(([t, v]) => (40 + ((t - t0) / span) * (width - 50)).toFixed(1) + ',' + (height - 20 - (v / scale) * (height - 30)).toFixed(1)).join(' '));
    line.setAttribute('stroke', COLORS[i % COLORS.length]);
    line.setAttribute('class', 'series');
    svg.append(line);
  });
  figure.append(svg);
  const legend = el('ul', null, { class: 'legend' });
  series.forEach((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    const item = el('li', s.name + ': ' + (last === null ? '—' : last.toPrecision(3) + ' ' + unit));
    item.style.setProperty('--swatch', COLORS[i % COLORS.length]);
    legend.append(item);
  });
  if (!series.length) legend.append(el('li', 'No samples yet.'));
  figure.append(legend);
  return figure;
}

async function loadCharts() {
  const history = await api('/stats/v1/history');
  const pick = (items, field) => items.map((s) => ({
    name: s.namespace + '/' + s.name,
    points: s.points.filter((p) => p[field] !== null && p[field] !== undefined).map((p) => [p.time, p[field]]),
  }));
  $('charts').replaceChildren(
    chart('Ingress, events per second', pick(history.brokers, 'ingressPerSecond'), '/s'),
    chart('Delivered, events per second', pick(history.triggers, 'deliveredPerSecond'), '/s'),
    chart('End-to-end latency, mean seconds', pick(history.triggers, 'meanLatencySeconds'), 's'),
    chart('Lag, events', pick(history.triggers, 'lagEvents'), 'events'),
  );
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    open();
  });
  for (const button of document.querySelectorAll('#nav [data-view]')) {
    button.addEventListener('click', () => showView(button.dataset.view));
  }
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('');
  });
  $('dl-form').addEventListener('submit', (event) => { event.preventDefault(); loadParked().catch(failed); });
  $('dl-trigger').addEventListener('change', () => loadParked().catch(failed));
  $('dl-redrive-selected').addEventListener('click', () => act('redrive', false).catch(failed));
  $('dl-purge-selected').addEventListener('click', () => act('purge', false).catch(failed));
  $('dl-redrive-all').addEventListener('click', () => act('redrive', true).catch(failed));
  $('dl-purge-all').addEventListener('click', () => act('purge', true).catch(failed));
  $('tail-form').addEventListener('submit', (event) => { event.preventDefault(); startTail(); });
  $('tail-stop').addEventListener('click', () => {
    if (tailing) tailing.abort();
    tailing = null;
    $('tail-status').textContent = 'Stopped.';
  });
  open();
});

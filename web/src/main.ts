/**
 * The dashboard: asks for the API key once (session storage), then shows the
 * chosen view over a range and grain, refreshing every few seconds, the top N
 * rows of the range and the rows under the chart, and the status of both
 * layers with a "run batch now" button.
 */
import type { LastRun, QueryAnswer, StatusAnswer, ViewInfo } from '../../functions/contract/api.ts';
import { Api, ApiFailure, apiBase } from './api.ts';
import { Chart } from './chart.ts';
import { age, clock, el, num, utc } from './format.ts';
import {
  additive,
  buildModel,
  buildTop,
  type ChartGrain,
  defaultGrain,
  grainsForRange,
  groupColumns,
  RANGES,
  type RangeId,
  rangeBounds,
  TOP_N,
  topQuery,
} from './model.ts';
import { UniquesCard } from './uniques.ts';

const KEY_STORAGE = 'tandem.apiKey';
const REFRESH_MS = 5_000;
const RUN_POLL_MS = 1_000;
/** Most rows in the table (the newest); the chart shows them all. */
const MAX_TABLE_ROWS = 500;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

interface Selection {
  view: string;
  range: RangeId;
  grain: ChartGrain;
  metric: string;
  groupBy: string[];
  filters: Record<string, string>;
}

const state = {
  api: undefined as Api | undefined,
  views: [] as ViewInfo[],
  sel: undefined as Selection | undefined,
  /** Dimension values seen per view, for the filter suggestions. */
  seen: new Map<string, Map<string, Set<string>>>(),
  timer: undefined as number | undefined,
  busy: false,
  again: false,
  status: undefined as { at: number; body: StatusAnswer } | undefined,
  chart: undefined as Chart | undefined,
  runId: undefined as string | undefined,
};

// ---------------------------------------------------------------- key and connection

function showKeyScreen(message?: string): void {
  stopTimer();
  $('app').hidden = true;
  $('banner').hidden = true;
  $('change-key').hidden = true;
  $('key-screen').hidden = false;
  const err = $('key-error');
  err.hidden = !message;
  err.textContent = message ?? '';
  $<HTMLInputElement>('api-key').value = '';
  $<HTMLInputElement>('api-key').focus();
  setConn('');
}

function setConn(text: string, kind: 'ok' | 'down' | '' = ''): void {
  const c = $('conn');
  c.textContent = text;
  c.className = `conn ${kind}`;
}

function banner(message: string | undefined): void {
  const b = $('banner');
  b.hidden = !message;
  b.textContent = message ?? '';
}

async function connect(key: string, fromForm: boolean): Promise<void> {
  const api = new Api(apiBase(), key);
  const submit = $<HTMLButtonElement>('key-submit');
  submit.disabled = true;
  try {
    const views = await api.views();
    sessionStorage.setItem(KEY_STORAGE, key);
    state.api = api;
    state.views = views;
    $('key-screen').hidden = true;
    $('app').hidden = false;
    $('change-key').hidden = false;
    banner(undefined);
    startApp();
  } catch (e) {
    const f = e instanceof ApiFailure ? e : new ApiFailure('server', String(e));
    if (f.kind === 'auth') {
      sessionStorage.removeItem(KEY_STORAGE);
      showKeyScreen(fromForm ? 'The API refused this key. Check it and try again.' : 'The API refused the saved key: enter it again.');
    } else if (fromForm) {
      showKeyScreen(`${f.message} Is \`tandem local\` running?`);
    } else {
      // A saved key and the API down: say so and try again shortly.
      $('key-screen').hidden = true;
      banner(`${f.message} Retrying every ${REFRESH_MS / 1000} s…`);
      setConn('API unreachable', 'down');
      window.setTimeout(() => void connect(key, false), REFRESH_MS);
    }
  } finally {
    submit.disabled = false;
  }
}

// ---------------------------------------------------------------- selection and controls

function viewOf(name: string): ViewInfo | undefined {
  return state.views.find((v) => v.name === name);
}

const rangeMs = (id: RangeId) => RANGES.find((r) => r.id === id)!.ms;

function defaultSelection(view: ViewInfo): Selection {
  const range: RangeId = view.grain === 'minute' ? '1h' : view.grain === 'hour' ? '24h' : '30d';
  const grain = defaultGrain(view, rangeMs(range));
  return { view: view.name, range, grain, metric: Object.keys(view.metrics)[0] ?? '', groupBy: [], filters: {} };
}

/** The selection kept in the URL hash, so a reload or a shared link shows the same chart. */
function readHash(): Selection | undefined {
  const p = new URLSearchParams(location.hash.slice(1));
  const view = viewOf(p.get('view') ?? '');
  if (!view) return undefined;
  const sel = defaultSelection(view);
  const range = RANGES.find((r) => r.id === p.get('range'));
  if (range) {
    sel.range = range.id;
    sel.grain = defaultGrain(view, range.ms);
  }
  const grain = p.get('grain') as ChartGrain | null;
  if (grain && grainsForRange(view, rangeMs(sel.range)).includes(grain)) sel.grain = grain;
  const metric = p.get('metric');
  if (metric && metric in view.metrics) sel.metric = metric;
  sel.groupBy = (p.get('groupBy') ?? '').split(',').filter((d) => view.dimensions.includes(d));
  for (const d of view.dimensions) {
    const v = p.get(`f.${d}`);
    if (v !== null) sel.filters[d] = v;
  }
  return sel;
}

function writeHash(sel: Selection): void {
  const p = new URLSearchParams({ view: sel.view, range: sel.range, grain: sel.grain, metric: sel.metric });
  if (sel.groupBy.length > 0) p.set('groupBy', sel.groupBy.join(','));
  for (const [d, v] of Object.entries(sel.filters)) p.set(`f.${d}`, v);
  history.replaceState(null, '', `#${p}`);
}

function fillSelect(select: HTMLSelectElement, options: readonly { value: string; label: string }[], value: string): void {
  select.replaceChildren(...options.map((o) => el('option', { value: o.value }, o.label)));
  select.value = value;
}

function renderControls(): void {
  const sel = state.sel!;
  const view = viewOf(sel.view)!;
  fillSelect(
    $<HTMLSelectElement>('view'),
    state.views.map((v) => ({ value: v.name, label: v.name })),
    sel.view,
  );
  fillSelect(
    $<HTMLSelectElement>('range'),
    RANGES.map((r) => ({ value: r.id, label: r.label })),
    sel.range,
  );
  fillGrains(view, sel);
  fillSelect(
    $<HTMLSelectElement>('metric'),
    Object.entries(view.metrics).map(([name, m]) => ({ value: name, label: `${name} — ${m.fn}(${'field' in m ? m.field : ''})` })),
    sel.metric,
  );

  const groupBy = $('group-by');
  groupBy.replaceChildren(el('legend', {}, 'Group by'));
  if (view.dimensions.length === 0) groupBy.append(el('span', { class: 'note' }, 'no dimensions'));
  for (const d of view.dimensions) {
    const box = el('input', { type: 'checkbox', value: d, 'data-dim': d });
    box.checked = sel.groupBy.includes(d);
    box.addEventListener('change', () => {
      sel.groupBy = view.dimensions.filter(
        (x) => $('group-by').querySelector<HTMLInputElement>(`input[data-dim="${x}"]`)?.checked ?? false,
      );
      changed();
    });
    groupBy.append(el('label', { class: 'check' }, box, ` ${d}`));
  }

  const filters = $('filters');
  filters.replaceChildren();
  for (const d of view.dimensions) {
    const listId = `values-${d}`;
    const input = el('input', { type: 'search', placeholder: 'any', list: listId, 'data-filter': d, 'aria-label': `filter ${d}` });
    input.value = sel.filters[d] ?? '';
    let debounce: number | undefined;
    input.addEventListener('input', () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => {
        if (input.value === '') delete sel.filters[d];
        else sel.filters[d] = input.value;
        changed();
      }, 400);
    });
    filters.append(el('label', { class: 'filter' }, `${d} =`, input, el('datalist', { id: listId })));
  }
  updateSuggestions();
  const description = [
    view.description,
    view.filter
      ? `filter: ${Object.entries(view.filter)
          .map(([k, v]) => `${k} = ${String(v)}`)
          .join(', ')}`
      : '',
    `grain: ${view.grain}`,
  ]
    .filter(Boolean)
    .join(' · ');
  $('view-description').textContent = description;
}

/** The grains offered for the selected range (a 90-day chart is not offered by the minute). */
function fillGrains(view: ViewInfo, sel: Selection): void {
  fillSelect(
    $<HTMLSelectElement>('grain'),
    grainsForRange(view, rangeMs(sel.range)).map((g) => ({ value: g, label: g })),
    sel.grain,
  );
}

function updateSuggestions(): void {
  const sel = state.sel!;
  const seen = state.seen.get(sel.view);
  for (const d of viewOf(sel.view)?.dimensions ?? []) {
    const list = document.getElementById(`values-${d}`);
    if (!list) continue;
    const values = [...(seen?.get(d) ?? [])].sort().slice(0, 200);
    if (list.childElementCount !== values.length) list.replaceChildren(...values.map((v) => el('option', { value: v })));
  }
}

function remember(view: ViewInfo, answer: QueryAnswer): void {
  const byDim = state.seen.get(view.name) ?? new Map<string, Set<string>>();
  state.seen.set(view.name, byDim);
  for (const d of groupColumns(view, answer)) {
    const set = byDim.get(d) ?? new Set<string>();
    byDim.set(d, set);
    for (const r of answer.rows) if (typeof r[d] === 'string') set.add(r[d] as string);
  }
}

function changed(): void {
  writeHash(state.sel!);
  void refresh();
}

function wireControls(): void {
  $<HTMLSelectElement>('view').addEventListener('change', (e) => {
    const view = viewOf((e.target as HTMLSelectElement).value);
    if (!view) return;
    state.sel = defaultSelection(view);
    renderControls();
    showLoading();
    changed();
  });
  $<HTMLSelectElement>('range').addEventListener('change', (e) => {
    const sel = state.sel!;
    sel.range = (e.target as HTMLSelectElement).value as RangeId;
    const view = viewOf(sel.view)!;
    sel.grain = defaultGrain(view, rangeMs(sel.range));
    fillGrains(view, sel);
    changed();
  });
  $<HTMLSelectElement>('grain').addEventListener('change', (e) => {
    state.sel!.grain = (e.target as HTMLSelectElement).value as ChartGrain;
    changed();
  });
  $<HTMLSelectElement>('metric').addEventListener('change', (e) => {
    state.sel!.metric = (e.target as HTMLSelectElement).value;
    changed();
  });
  $<HTMLInputElement>('live').addEventListener('change', (e) => {
    if ((e.target as HTMLInputElement).checked) {
      startTimer();
      void refresh();
    } else stopTimer();
  });
  $('run-batch').addEventListener('click', () => void runBatch());
}

// ---------------------------------------------------------------- refresh loop

function startTimer(): void {
  stopTimer();
  state.timer = window.setInterval(() => {
    if (document.visibilityState === 'visible') void refresh();
  }, REFRESH_MS);
}

function stopTimer(): void {
  if (state.timer !== undefined) window.clearInterval(state.timer);
  state.timer = undefined;
}

function startApp(): void {
  state.chart ??= new Chart($('chart'));
  if (state.views.length === 0) {
    $('chart').dataset.state = 'empty';
    showEmpty('No views are declared. Start the local cloud with --views <file>, or declare views in the stack.');
    void refreshStatus();
    return;
  }
  state.sel = readHash() ?? defaultSelection(state.views[0]!);
  renderControls();
  showLoading();
  writeHash(state.sel);
  void refresh();
  if ($<HTMLInputElement>('live').checked) startTimer();
}

function showLoading(): void {
  $('chart').dataset.state = 'loading';
  $('chart-caption').textContent = 'Loading…';
}

function showEmpty(message: string | undefined): void {
  const empty = $('chart-empty');
  empty.hidden = !message;
  empty.textContent = message ?? '';
}

/** Fetches the chosen view and the status; one at a time (a change during a fetch refetches after it). */
async function refresh(): Promise<void> {
  if (!state.api) return;
  if (state.busy) {
    state.again = true;
    return;
  }
  state.busy = true;
  try {
    await Promise.all([refreshView(), refreshStatus()]);
  } finally {
    state.busy = false;
    if (state.again) {
      state.again = false;
      void refresh();
    }
  }
}

function queryParams(sel: Selection, now: number, parts: boolean): Record<string, string> {
  const { from, to } = rangeBounds(rangeMs(sel.range), sel.grain, now);
  const params: Record<string, string> = {
    from: new Date(from).toISOString(),
    to: new Date(to).toISOString(),
    grain: sel.grain,
    groupBy: sel.groupBy.join(','),
    ...sel.filters,
  };
  if (parts) params.parts = '1';
  return params;
}

async function refreshView(): Promise<void> {
  const sel = state.sel;
  const api = state.api;
  if (!sel || !api) return;
  const view = viewOf(sel.view)!;
  const wanted = JSON.stringify(sel);
  // The batch/speed split of each row, where the two parts add up to the row.
  const params = queryParams(sel, Date.now(), sel.groupBy.length === 0 && additive(view, sel.metric));
  const top = topQuery(view, sel, Date.parse(params.from!), Date.parse(params.to!));
  const [chart, ranked] = await Promise.allSettled([
    api.query(sel.view, params),
    top ? api.query(sel.view, top) : Promise.resolve(undefined),
  ]);
  if (JSON.stringify(state.sel) !== wanted) return; // the selection changed meanwhile; its own fetch follows
  if (chart.status === 'fulfilled') {
    remember(view, chart.value);
    updateSuggestions();
    renderView(view, sel, chart.value);
    online();
  } else {
    handleFailure(chart.reason, (msg) => {
      $('chart').dataset.state = 'error';
      $('chart-caption').textContent = msg;
    });
  }
  // The unique-users card (issue 21) over the same range and grain; it reports its own failures.
  uniques ??= new UniquesCard($('uniques-card'), $('uniques'), $('uniques-caption'));
  void uniques.refresh(api, state.views, { from: params.from!, to: params.to!, grain: sel.grain });
  if (ranked.status === 'fulfilled') renderTop(view, sel, ranked.value);
  else
    handleFailure(ranked.reason, (msg) => {
      $('top').dataset.state = 'error';
      $('top-note').textContent = msg;
    });
}

let uniques: UniquesCard | undefined;

function online(): void {
  banner(undefined);
  setConn(`${$<HTMLInputElement>('live').checked ? 'live' : 'paused'} · updated ${clock(Date.now())} UTC`, 'ok');
}

function handleFailure(e: unknown, show: (message: string) => void): void {
  const f = e instanceof ApiFailure ? e : new ApiFailure('server', (e as Error)?.message ?? String(e));
  if (f.kind === 'auth') {
    sessionStorage.removeItem(KEY_STORAGE);
    state.api = undefined;
    showKeyScreen('The API refused the key (it may have been revoked): enter it again.');
    return;
  }
  if (f.kind === 'down') {
    banner(`${f.message} Showing the last data; retrying every ${REFRESH_MS / 1000} s.`);
    setConn('API unreachable', 'down');
    return;
  }
  show(f.status ? `${f.message} (${f.status})` : f.message);
}

function renderView(view: ViewInfo, sel: Selection, answer: QueryAnswer): void {
  const model = buildModel(view, answer, sel.metric, sel.grain);
  const chartEl = $('chart');
  chartEl.dataset.state = answer.rows.length === 0 ? 'empty' : 'ready';
  chartEl.dataset.metric = sel.metric;
  chartEl.dataset.total = model.totals.all === null ? '' : String(model.totals.all);
  chartEl.dataset.batchTotal = model.totals.batch === null ? '' : String(model.totals.batch);
  chartEl.dataset.speedTotal = model.totals.speed === null ? '' : String(model.totals.speed);
  chartEl.dataset.version = answer.batch ? String(answer.batch.version) : '';
  state.chart!.render(model);

  const parts: string[] = [];
  if (model.totals.all !== null) parts.push(`${sel.metric}: ${num(model.totals.all)} in range`);
  else parts.push(`${sel.metric} per bucket`);
  if (model.split) parts.push(`batch ${num(model.totals.batch)} · speed ${num(model.totals.speed)}`);
  parts.push(
    answer.batch
      ? `batch version ${answer.batch.version}, cutoff ${utc(Date.parse(answer.batch.cutoff), true)} UTC`
      : 'no batch published yet: all from the speed layer',
  );
  if (model.hiddenGroups > 0) parts.push(`${model.hiddenGroups} smaller group(s) not drawn`);
  $('key-split').hidden = !model.split;
  $('key-shade').hidden = model.split;
  $('chart-caption').textContent = parts.join(' · ');
  showEmpty(
    answer.rows.length === 0
      ? `No events in ${RANGES.find((r) => r.id === sel.range)!.label}${Object.keys(sel.filters).length ? ' matching the filters' : ''}.`
      : undefined,
  );
  renderTable(view, sel, answer, model.split);
}

/** The top-N table: the whole range, ranked by the chosen metric (largest first); hidden for a view without dimensions. */
function renderTop(view: ViewInfo, sel: Selection, answer: QueryAnswer | undefined): void {
  const card = $('top-card');
  card.hidden = answer === undefined;
  if (!answer) return;
  const top = buildTop(view, sel.groupBy, answer, sel.metric);
  const metrics = [sel.metric, ...Object.keys(view.metrics).filter((m) => m !== sel.metric)];
  const table = $<HTMLTableElement>('top');
  table.dataset.state = top.rows.length === 0 ? 'empty' : 'ready';
  table.dataset.metric = sel.metric;
  $('top-title').textContent = `Top ${TOP_N} ${top.columns.join(' · ')} by ${sel.metric}`;
  const head = ['#', ...top.columns, ...metrics.map((m) => (m === sel.metric ? `${m} ▼` : m))];
  const cols = ['rank', ...top.columns, ...metrics];
  table.tHead!.replaceChildren(
    el('tr', {}, ...head.map((h, i) => el('th', { 'data-col': cols[i]!, class: i === 0 || i > top.columns.length ? 'num' : '' }, h))),
  );
  table.tBodies[0]!.replaceChildren(
    ...top.rows.map((r) =>
      el(
        'tr',
        {},
        el('td', { 'data-col': 'rank', class: 'num' }, String(r.rank)),
        ...r.labels.map((l, i) => el('td', { 'data-col': top.columns[i]! }, l)),
        ...metrics.map((m) => el('td', { 'data-col': m, class: m === sel.metric ? 'num ranked' : 'num' }, num(r.values[m] ?? null))),
      ),
    ),
  );
  const range = RANGES.find((r) => r.id === sel.range)!.label;
  $('top-note').textContent =
    top.rows.length === 0
      ? `No events in ${range}.`
      : `${range}: ${utc(Date.parse(answer.from))} to ${utc(Date.parse(answer.to))} UTC` +
        `${Object.keys(sel.filters).length ? ', filtered' : ''} · ties by ${top.columns.join(', ')}`;
}

function renderTable(view: ViewInfo, sel: Selection, answer: QueryAnswer, split: boolean): void {
  const groups = groupColumns(view, answer);
  const metrics = Object.keys(view.metrics);
  const head = ['bucket (UTC)', ...groups, ...metrics, ...(split ? [`${sel.metric}: batch`, `${sel.metric}: speed`] : [])];
  const cols = ['bucket', ...groups, ...metrics, ...(split ? ['parts.batch', 'parts.speed'] : [])];
  const table = $<HTMLTableElement>('rows');
  table.tHead!.replaceChildren(
    el('tr', {}, ...head.map((h, i) => el('th', { 'data-col': cols[i]!, class: i >= 1 + groups.length ? 'num' : '' }, h))),
  );
  // Newest buckets first: what a live dashboard looks at.
  const rows = [...answer.rows].reverse().slice(0, MAX_TABLE_ROWS);
  const body = rows.map((r) => {
    const cells = cols.map((c, i) => {
      let text: string;
      if (c === 'bucket') text = utc(Date.parse(String(r.bucket)));
      else if (c === 'parts.batch') text = num(r.parts?.batch[sel.metric] ?? null);
      else if (c === 'parts.speed') text = num(r.parts?.speed[sel.metric] ?? null);
      else if (i <= groups.length) text = r[c] === null || r[c] === undefined ? '(none)' : String(r[c]);
      else text = num(r[c] as number | null);
      return el('td', { 'data-col': c, class: i > groups.length ? 'num' : '' }, text);
    });
    return el('tr', {}, ...cells);
  });
  table.tBodies[0]!.replaceChildren(...body);
  $('rows-note').textContent =
    answer.rows.length === 0
      ? 'No rows.'
      : `${answer.rows.length} row${answer.rows.length === 1 ? '' : 's'}` +
        `${answer.rows.length > MAX_TABLE_ROWS ? `, the newest ${MAX_TABLE_ROWS} shown` : ''}` +
        ` · ${answer.from} to ${answer.to} by ${answer.grain}`;
}

// ---------------------------------------------------------------- status panel

async function refreshStatus(): Promise<void> {
  if (!state.api) return;
  try {
    const body = await state.api.status();
    state.status = { at: Date.now(), body };
    renderStatus(body);
  } catch (e) {
    handleFailure(e, (msg) => {
      $('st-updated').textContent = `Status unavailable: ${msg}`;
    });
  }
}

function renderStatus(s: StatusAnswer): void {
  const panel = $('st-version').closest('aside')!;
  panel.setAttribute('data-version', s.batch ? String(s.batch.version) : '');
  $('st-version').textContent = s.batch ? String(s.batch.version) : 'none yet';
  $('st-cutoff').textContent = s.batch ? `${utc(Date.parse(s.batch.cutoff), true)} UTC` : '–';
  const nowMs = Date.parse(s.now);
  $('st-age').textContent = s.batch ? age(s.batch.lagSeconds) : '–';
  renderRun(s.lastRun);
  $('st-poison').textContent = String(s.poison.count);
  $('st-poison').classList.toggle('warn', s.poison.count > 0);

  const speed = s.speed.shards;
  $('st-speed').replaceChildren(
    speed.length === 0
      ? el('p', { class: 'note' }, 'No speed progress yet.')
      : miniTable(
          ['shard', 'through', 'lag'],
          // The age of the last record applied.
          speed.map((x) => [
            shortShard(x.shard),
            x.arrival ? clock(Date.parse(x.arrival)) : '–',
            x.lagMs !== undefined ? age(x.lagMs / 1000) : '–',
          ]),
        ),
  );
  const archive = s.archive.shards;
  $('st-archive').replaceChildren(
    archive.length === 0
      ? el('p', { class: 'note' }, 'Nothing archived yet.')
      : miniTable(
          ['shard', 'archived through', 'records'],
          archive.map((x) => [
            shortShard(x.shard),
            x.arrival ? clock(Date.parse(x.arrival)) : '–',
            x.records !== undefined ? num(x.records) : '–',
          ]),
        ),
  );
  $('st-updated').textContent = `Status at ${clock(nowMs)} UTC${s.windowSeconds ? ` · ${s.windowSeconds} s arrival windows` : ''}`;
}

function renderRun(run: LastRun | null): void {
  if (!run) {
    $('st-run').textContent = 'none yet';
    $('st-run-views').replaceChildren();
    return;
  }
  const took = run.durationMs !== null ? ` in ${(run.durationMs / 1000).toFixed(1)} s` : '';
  const stage = run.state === 'RUNNING' ? ` (${run.stage})` : '';
  const state = el('span', { class: `badge ${run.state.toLowerCase()}` }, run.state);
  $('st-run').replaceChildren(state, `${stage}${took}${run.startedAt ? ` · ${clock(Date.parse(run.startedAt))} UTC` : ''}`);
  if (run.error) $('st-run').append(el('div', { class: 'error' }, run.error));
  const views = Object.entries(run.views);
  $('st-run-views').replaceChildren(
    ...(views.length === 0
      ? []
      : [
          miniTable(
            ['view', 'rows', 'sql ms', 'load ms'],
            views.map(([name, v]) => [name, num(v.rows), num(v.sqlMs), num(v.loadMs)]),
          ),
        ]),
  );
}

/** `shardId-000000000001` as `#1`. */
function shortShard(id: string): string {
  const m = /^shardId-(\d+)$/.exec(id);
  return m ? `#${Number(m[1])}` : id;
}

function miniTable(head: string[], rows: string[][]): HTMLTableElement {
  return el(
    'table',
    { class: 'mini-table' },
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))),
  );
}

// ---------------------------------------------------------------- run batch now

async function runBatch(): Promise<void> {
  const api = state.api;
  if (!api || state.runId) return;
  const button = $<HTMLButtonElement>('run-batch');
  const progress = $('run-progress');
  button.disabled = true;
  progress.textContent = 'Starting a batch run…';
  progress.dataset.state = 'STARTING';
  try {
    const { id } = await api.startRun();
    state.runId = id;
    for (;;) {
      const run = await api.run(id);
      progress.textContent = `Run ${id}: ${run.state} · ${run.stage}`;
      if (run.state !== 'RUNNING') {
        progress.textContent =
          run.state === 'SUCCEEDED'
            ? `Run ${id} succeeded: version ${run.version ?? '?'}, cutoff ${run.cutoff ? `${utc(Date.parse(run.cutoff), true)} UTC` : '?'}`
            : `Run ${id} ${run.state}${run.error ? `: ${run.error}` : ''}`;
        progress.dataset.state = run.state;
        break;
      }
      await new Promise((r) => setTimeout(r, RUN_POLL_MS));
    }
    await refresh();
  } catch (e) {
    const id = state.runId;
    handleFailure(e, (msg) => {
      progress.textContent = id ? `Run ${id} started, but its state cannot be read: ${msg}` : `The batch run could not start: ${msg}`;
      progress.dataset.state = 'ERROR';
    });
  } finally {
    state.runId = undefined;
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- boot

function boot(): void {
  wireControls();
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $<HTMLInputElement>('api-key').value.trim();
    if (key) void connect(key, true);
  });
  $('change-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORAGE);
    state.api = undefined;
    showKeyScreen();
  });
  // The status age ticks between refreshes.
  window.setInterval(() => {
    const s = state.status;
    if (!s?.body.batch) return;
    const lag = s.body.batch.lagSeconds + (Date.now() - s.at) / 1000;
    $('st-age').textContent = age(lag);
  }, 1_000);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) void connect(key, false);
  else showKeyScreen();
}

boot();

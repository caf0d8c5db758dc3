/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core)
 * against the local cloud: known events in, the key entered once, the chart and
 * the table show the known numbers, live refresh picks up new events, and the
 * cutoff line moves after "Run batch now". Saves docs/dashboard.png.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../local/emulators.ts';
import { buildDashboard } from '../../web/build.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KEY = 'dashboard-test-key';
const CHROMIUM = '/usr/bin/chromium';

interface Cloud {
  readonly url: string;
  stop(): Promise<void>;
}

let cloud: Cloud | undefined;
let context: BrowserContext | undefined;
let page: Page;
const dirs: string[] = [];

/** The current minute: the newest bucket of the test events (all inside "the last hour"). */
const TS = Math.floor(Date.now() / 60_000) * 60_000;
/** Events per bucket over most of the last hour, of two types, plus two purchases; a shape worth a screenshot. */
const SPREAD = Array.from({ length: 55 }, (_, k) => ({ bucket: TS - k * 60_000, clicks: 1 + ((k * 7) % 5), views: (k * 3) % 4 }));
const FIRST = [
  ...SPREAD.flatMap(({ bucket, clicks, views }) => [
    ...Array.from({ length: clicks }, (_, i) => ({ id: `dash-click-${bucket}-${i}`, type: 'dash_click', ts: bucket + 1_000 * i })),
    ...Array.from({ length: views }, (_, i) => ({ id: `dash-view-${bucket}-${i}`, type: 'dash_view', ts: bucket + 1_000 * i })),
  ]),
  { id: 'dash-buy-1', type: 'purchase', ts: TS, country: 'NL', amount: 12.34 },
  { id: 'dash-buy-2', type: 'purchase', ts: TS, country: 'NL', amount: 56.78 },
];
const SECOND = Array.from({ length: 4 }, (_, i) => ({ id: `dash-late-${i}`, type: 'dash_click', ts: TS }));

/** The oracle: events per bucket (table text) and per type. */
function expectedBuckets(events: readonly { ts: number }[]): Record<string, string> {
  const out: Record<string, number> = {};
  for (const e of events) {
    const d = new Date(Math.floor(e.ts / 60_000) * 60_000).toISOString();
    const key = `${d.slice(0, 10)} ${d.slice(11, 16)}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, String(v)]));
}
const countOf = (type: string) => FIRST.filter((e) => e.type === type).length;

async function api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const res = await fetch(cloud!.url + path, {
    method,
    headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Total of events_by_type over the last hour, as the API answers it. */
async function apiTotal(): Promise<number> {
  const from = new Date(TS - 3_600_000).toISOString();
  const q = await api<{ rows: { events: number }[] }>('GET', `/views/events_by_type?groupBy=&grain=all&from=${from}`);
  return q.rows.reduce((s, r) => s + r.events, 0);
}

async function archivedRecords(): Promise<number> {
  const s = await api<{ archive?: { shards?: { records?: number }[] } }>('GET', '/status');
  return (s.archive?.shards ?? []).reduce((n, x) => n + (x.records ?? 0), 0);
}

async function runBatch(): Promise<{ version: number; cutoff: string }> {
  const { id } = await api<{ id: string }>('POST', '/batch/runs', {});
  return until(`batch run ${id}`, async () => {
    const run = await api<{ state: string; version: number; cutoff: string; error?: string }>('GET', `/batch/runs/${id}`);
    if (run.state === 'RUNNING') return undefined;
    if (run.state !== 'SUCCEEDED') throw new Error(`batch run ${id} ${run.state}: ${run.error ?? ''}`);
    return run;
  });
}

beforeAll(async () => {
  await buildDashboard();
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-dash-'));
  dirs.push(dataDir);
  const { startLocalCloud } = await import('../../local/cloud.ts');
  cloud = await startLocalCloud({ port: await freePort(), demo: false, windowSeconds: 2, batchEverySeconds: null, dataDir, apiKey: KEY });

  const sent = await api<{ accepted: number }>('POST', '/events', FIRST);
  expect(sent.accepted).toBe(FIRST.length);
  await until('the speed layer to count the first events', async () => ((await apiTotal()) === FIRST.length ? true : undefined));
  // Publish version 1 once the archive holds every event, so the dashboard opens with a cutoff.
  await until('the archive to hold the first events', async () => ((await archivedRecords()) >= FIRST.length ? true : undefined));
  await runBatch();

  const profile = mkdtempSync(join(tmpdir(), 'tandem-chromium-'));
  dirs.push(profile);
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 860 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
}, 180_000);

afterAll(async () => {
  await context?.close();
  await cloud?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const chart = () => page.locator('#chart');

describe('dashboard', () => {
  it('asks for the key, refuses a wrong one, then shows the view', async () => {
    await page.goto(cloud!.url);
    await expect.poll(() => page.locator('#key-screen').isVisible()).toBe(true);
    await page.fill('#api-key', 'not-the-key');
    await page.click('#key-submit');
    await expect.poll(() => page.locator('#key-error').textContent(), { timeout: 15_000 }).toContain('refused');
    expect(await page.locator('#app').isVisible()).toBe(false);

    await page.fill('#api-key', KEY);
    await page.click('#key-submit');
    await expect.poll(() => page.locator('#app').isVisible(), { timeout: 15_000 }).toBe(true);
    expect(await page.evaluate(() => sessionStorage.getItem('tandem.apiKey'))).toBe(KEY);
    const views = await page.locator('#view option').allTextContents();
    expect(views).toEqual(['events_by_type', 'revenue_by_country', 'page_views']);
  });

  it('shows the known numbers in the chart and the table, with the cutoff line', async () => {
    await expect.poll(() => chart().getAttribute('data-state'), { timeout: 30_000 }).toBe('ready');
    expect(await chart().getAttribute('data-total')).toBe(String(FIRST.length));
    expect(await page.locator('#chart-caption').textContent()).toContain(`events: ${FIRST.length} in range`);
    expect(await chart().getAttribute('data-version')).toBe('1');
    expect(await chart().getAttribute('data-cutoff')).not.toBe('');
    // The canvas is drawn and the cutoff is a visible line over it.
    expect(await page.locator('#chart canvas').count()).toBeGreaterThan(0);
    expect(await page.locator('#chart .cutoff-line').isVisible()).toBe(true);
    expect(await chart().getAttribute('data-cutoff-x')).not.toBe('');

    // One row per bucket with totals; then grouped by type, a row per type and bucket.
    const rowsOf = (cols: string[]) =>
      page
        .locator('#rows tbody tr')
        .evaluateAll((trs, c) => trs.map((tr) => c.map((name) => tr.querySelector(`td[data-col="${name}"]`)?.textContent ?? '')), cols);
    expect(Object.fromEntries(await rowsOf(['bucket', 'events']))).toEqual(expectedBuckets(FIRST));
    await page.check('#group-by input[data-dim="type"]');
    await expect.poll(() => page.locator('#rows thead th[data-col="type"]').count(), { timeout: 15_000 }).toBe(1);
    const byType: Record<string, number> = {};
    for (const [type, n] of await rowsOf(['type', 'events'])) byType[type!] = (byType[type!] ?? 0) + Number(n);
    expect(byType).toEqual({ dash_click: countOf('dash_click'), dash_view: countOf('dash_view'), purchase: 2 });
    await page.uncheck('#group-by input[data-dim="type"]');
    await expect.poll(() => page.locator('#rows thead th[data-col="type"]').count(), { timeout: 15_000 }).toBe(0);
  });

  it('shows exact decimal sums of another view', async () => {
    await page.selectOption('#view', 'revenue_by_country');
    await page.selectOption('#metric', 'revenue');
    await expect.poll(() => page.locator('#chart-caption').textContent(), { timeout: 15_000 }).toContain('revenue: 69.12 in range');
    expect(await page.locator('#rows tbody td[data-col="revenue"]').allTextContents()).toEqual(['69.12']);
    expect(await page.locator('#rows tbody td[data-col="orders"]').allTextContents()).toEqual(['2']);
    await page.selectOption('#view', 'events_by_type');
    await expect.poll(() => chart().getAttribute('data-total'), { timeout: 15_000 }).toBe(String(FIRST.length));
  });

  it('ranks the top N of the range, and shows 90 days by the day with the split and the cutoff', async () => {
    // The oracle: events per type, most first, ties by type.
    const want = ['dash_click', 'dash_view', 'purchase']
      .map((t) => [t, countOf(t)] as const)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .map(([t, n], i) => [String(i + 1), t, String(n)]);
    const topRows = () =>
      page
        .locator('#top tbody tr')
        .evaluateAll((trs) =>
          trs.map((tr) => ['rank', 'type', 'events'].map((c) => tr.querySelector(`td[data-col="${c}"]`)?.textContent ?? '')),
        );
    // No group-by chosen: the view's dimensions are ranked.
    await expect.poll(() => page.locator('#top').getAttribute('data-state'), { timeout: 30_000 }).toBe('ready');
    expect(await page.locator('#top-title').textContent()).toBe('Top 10 type by events');
    await expect.poll(topRows, { timeout: 15_000 }).toEqual(want);

    await page.selectOption('#range', '90d');
    await expect.poll(() => page.locator('#grain').inputValue()).toBe('day');
    expect(await page.locator('#grain option').allTextContents()).toEqual(['day']);
    await expect.poll(() => page.locator('#rows-note').textContent(), { timeout: 30_000 }).toContain('by day');
    await expect.poll(() => chart().getAttribute('data-total'), { timeout: 15_000 }).toBe(String(FIRST.length));
    // The batch/speed split and the cutoff line, as over an hour.
    expect(Number(await chart().getAttribute('data-batch-total')) + Number(await chart().getAttribute('data-speed-total'))).toBe(
      FIRST.length,
    );
    expect(await chart().getAttribute('data-version')).toBe('1');
    expect(await page.locator('#chart .cutoff-line').isVisible()).toBe(true);
    await expect.poll(topRows, { timeout: 15_000 }).toEqual(want);
    expect(await page.locator('#top-note').textContent()).toContain('last 90 days');
    expect(page.url()).toContain('range=90d');

    await page.selectOption('#range', '1h');
    await expect.poll(() => page.locator('#grain').inputValue()).toBe('minute');
    await expect.poll(() => page.locator('#rows-note').textContent(), { timeout: 30_000 }).toContain('by minute');
  });

  it('refreshes live and moves the cutoff after "Run batch now"', async () => {
    const before = await chart().getAttribute('data-cutoff');
    const sent = await api<{ accepted: number }>('POST', '/events', SECOND);
    expect(sent.accepted).toBe(SECOND.length);
    const total = FIRST.length + SECOND.length;
    // No reload: the page polls every few seconds.
    await expect.poll(() => chart().getAttribute('data-total'), { timeout: 30_000 }).toBe(String(total));
    await until('the archive to hold every event', async () => ((await archivedRecords()) >= total ? true : undefined));

    await page.click('#run-batch');
    await expect.poll(() => page.locator('#run-progress').getAttribute('data-state'), { timeout: 60_000 }).toBe('SUCCEEDED');
    await expect.poll(() => chart().getAttribute('data-version'), { timeout: 15_000 }).toBe('2');
    const after = await chart().getAttribute('data-cutoff');
    expect(after).not.toBe('');
    expect(Date.parse(after!)).toBeGreaterThan(Date.parse(before!));
    // ...and the line is drawn at the new cutoff (pixels are not compared: the "last hour" axis slides too).
    expect(await page.locator('#chart .cutoff-label').textContent()).toBe(`cutoff ${after!.slice(11, 19)}`);
    expect(await page.locator('#chart .cutoff-line').isVisible()).toBe(true);
    expect(await page.locator('#st-version').textContent()).toBe('2');
    // The numbers do not change when the batch takes over from the speed layer.
    expect(await chart().getAttribute('data-total')).toBe(String(total));

    await page.screenshot({ path: join(root, 'docs', 'dashboard.png') });
  });

  it('asks again for a saved key the API refuses, and says when the API is down', async () => {
    // Session storage is per tab: a new tab starts with a stale key saved.
    const other = await context!.newPage();
    await other.addInitScript(() => {
      if (!sessionStorage.getItem('tandem.apiKey')) sessionStorage.setItem('tandem.apiKey', 'revoked-key');
    });
    await other.goto(cloud!.url);
    await expect.poll(() => other.locator('#key-error').textContent(), { timeout: 15_000 }).toContain('enter it again');
    await other.fill('#api-key', KEY);
    await other.click('#key-submit');
    await expect.poll(() => other.getAttribute('#chart', 'data-state'), { timeout: 30_000 }).toBe('ready');

    // The API goes away: the page keeps its last numbers and says so.
    const running = cloud!;
    cloud = undefined;
    await running.stop();
    await expect.poll(() => other.locator('#banner').textContent(), { timeout: 30_000 }).toContain('cannot be reached');
    expect(await other.locator('#conn').textContent()).toBe('API unreachable');
    expect(await other.getAttribute('#chart', 'data-total')).toBe(String(FIRST.length + SECOND.length));
    await other.close();
  });
});

/** The CLI's pure parts: target resolution, time flags, query parameters, input reading. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { resolveTarget } from '../../bin/client.ts';
import { progressOf } from '../../bin/commands/batch.ts';
import { defaultGrain, parseWhen, queryParams, rangeOf } from '../../bin/commands/query.ts';
import { age, renderStatus } from '../../bin/commands/status.ts';
import { readEvents } from '../../bin/events.ts';
import { UsageError } from '../../bin/output.ts';

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

async function read(text: string) {
  const out = [];
  for await (const item of readEvents(Readable.from([text]))) out.push(item);
  return out;
}

describe('resolveTarget', () => {
  it('prefers flags, then the environment, then the local cloud defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-cli-'));
    mkdirSync(join(dir, '.tandem'));
    writeFileSync(join(dir, '.tandem', 'api-key'), 'saved-key\n');
    expect(resolveTarget({ url: 'http://x:1/', apiKey: 'k' }, { TANDEM_API_KEY: 'e' }, dir)).toEqual({
      url: 'http://x:1',
      apiKey: 'k',
      keySource: '--api-key',
    });
    expect(resolveTarget({}, { TANDEM_API_URL: 'http://y:2', TANDEM_API_KEY: 'e' }, dir)).toMatchObject({ url: 'http://y:2', apiKey: 'e' });
    expect(resolveTarget({}, {}, dir)).toMatchObject({ url: 'http://localhost:3000', apiKey: 'saved-key' });
    expect(resolveTarget({}, {}, tmpdir())).toMatchObject({ apiKey: undefined, keySource: 'none' });
  });
});

describe('parseWhen', () => {
  it('reads now, relative times, ISO-8601 and epoch milliseconds', () => {
    expect(parseWhen('--from', 'now', NOW)).toBe('2025-06-01T12:00:00.000Z');
    expect(parseWhen('--from', '-15m', NOW)).toBe('2025-06-01T11:45:00.000Z');
    expect(parseWhen('--from', 'now-2h', NOW)).toBe('2025-06-01T10:00:00.000Z');
    expect(parseWhen('--to', 'now+1d', NOW)).toBe('2025-06-02T12:00:00.000Z');
    expect(parseWhen('--from', '2025-01-02', NOW)).toBe('2025-01-02T00:00:00.000Z');
    expect(parseWhen('--from', String(NOW), NOW)).toBe('2025-06-01T12:00:00.000Z');
  });

  it('names the flag when it cannot read a time', () => {
    expect(() => parseWhen('--from', 'yesterday', NOW)).toThrow(UsageError);
    expect(() => parseWhen('--from', 'yesterday', NOW)).toThrow(/--from/);
  });
});

describe('queryParams', () => {
  it('maps flags to the contract parameters', () => {
    expect(queryParams({ from: '-1h', grain: 'hour', groupBy: 'country', where: ['country=DE', 'page=/a=b'] }, NOW)).toEqual({
      from: '2025-06-01T11:00:00.000Z',
      to: undefined,
      grain: 'hour',
      groupBy: 'country',
      country: 'DE',
      page: '/a=b',
    });
    expect(queryParams({ totals: true, where: [] }, NOW).groupBy).toBe('');
  });

  it('rejects malformed --where and conflicting flags as usage errors', () => {
    expect(() => queryParams({ where: ['country'] }, NOW)).toThrow(/--where must be dimension=value/);
    expect(() => queryParams({ where: ['from=x'] }, NOW)).toThrow(UsageError);
    expect(() => queryParams({ totals: true, groupBy: 'a', where: [] }, NOW)).toThrow(/--totals or --group-by/);
    expect(() => queryParams({ where: ['limit=3'] }, NOW)).toThrow(/use --limit/);
    expect(() => queryParams({ where: ['orderBy=views'] }, NOW)).toThrow(/use --order-by/);
  });

  it('passes --order-by and --limit through as orderBy and limit', () => {
    expect(queryParams({ orderBy: '-views', limit: '10', where: [] }, NOW)).toMatchObject({ orderBy: '-views', limit: '10' });
    expect(queryParams({ orderBy: 'revenue', where: [] }, NOW)).toMatchObject({ orderBy: 'revenue' });
    expect('limit' in queryParams({ where: [] }, NOW) || 'orderBy' in queryParams({ where: [] }, NOW)).toBe(false);
  });

  it.each([
    [{ orderBy: '' }, /--order-by must be a metric name/],
    [{ orderBy: '-' }, /--order-by/],
    [{ orderBy: 'views desc' }, /--order-by/],
    [{ limit: '0' }, /--limit must be a whole number from 1 to 10000, received "0"/],
    [{ limit: '10001' }, /--limit/],
    [{ limit: '2.5' }, /--limit/],
    [{ limit: '-1' }, /--limit/],
    [{ limit: 'ten' }, /--limit/],
  ])('refuses %j as a usage error', (flags, message) => {
    expect(() => queryParams({ ...flags, where: [] }, NOW)).toThrow(UsageError);
    expect(() => queryParams({ ...flags, where: [] }, NOW)).toThrow(message);
  });
});

describe('the default grain of a long range', () => {
  const H = 3_600_000;
  const D = 24 * H;

  it('is day beyond 7 days, hour beyond 24 hours, else the API default (the view grain)', () => {
    expect(defaultGrain(90 * D, undefined)).toBe('day');
    expect(defaultGrain(7 * D + 1, 'minute')).toBe('day');
    expect(defaultGrain(7 * D, 'minute')).toBe('hour');
    expect(defaultGrain(24 * H + 1, 'minute')).toBe('hour');
    expect(defaultGrain(24 * H, 'minute')).toBeUndefined();
    expect(defaultGrain(15 * 60_000, 'minute')).toBeUndefined();
  });

  it("is never finer than the view's grain", () => {
    expect(defaultGrain(3 * D, 'day')).toBe('day');
    expect(defaultGrain(3 * D, 'hour')).toBe('hour');
    expect(defaultGrain(30 * D, 'day')).toBe('day');
  });

  it('measures the range as the API will: to defaults to now, from to 24 h before to', () => {
    expect(rangeOf(queryParams({ from: '-90d', where: [] }, NOW), NOW)).toBe(90 * D);
    expect(rangeOf(queryParams({ from: '2025-05-01', to: '2025-05-04', where: [] }, NOW), NOW)).toBe(3 * D);
    expect(rangeOf(queryParams({ to: '-30d', where: [] }, NOW), NOW)).toBe(24 * H);
    expect(rangeOf(queryParams({ where: [] }, NOW), NOW)).toBe(24 * H);
  });
});

describe('readEvents', () => {
  it('reads NDJSON line by line, reporting bad lines with their number', async () => {
    const items = await read('{"type":"a","ts":1}\n\nnot json\n{"type":"b","ts":2}\n');
    expect(items.map((i) => [i.position, i.invalid === undefined])).toEqual([
      [{ line: 1 }, true],
      [{ line: 3 }, false],
      [{ line: 4 }, true],
    ]);
    expect(items[1]!.invalid).toMatch(/line 3 is not valid JSON/);
  });

  it('reads a JSON array, {"events": [...]} and a pretty-printed single event', async () => {
    expect((await read('[{"type":"a"},\n {"type":"b"}]')).map((i) => i.position)).toEqual([{ index: 0 }, { index: 1 }]);
    expect((await read('{\n "events": [{"type":"a"}]\n}')).map((i) => i.event)).toEqual([{ type: 'a' }]);
    expect((await read('{\n  "type": "a",\n  "ts": 1\n}\n')).map((i) => i.event)).toEqual([{ type: 'a', ts: 1 }]);
  });

  it('fails clearly on a document that is not JSON', async () => {
    await expect(read('[{"type":')).rejects.toThrow(/neither NDJSON nor one JSON document/);
  });
});

describe('batch and status helpers', () => {
  it('counts the progress of a run: plan, one step per view, publish', () => {
    const view = { rows: 1, sqlMs: 1, loadMs: 1 };
    expect(progressOf({ state: 'RUNNING', stage: 'plan', views: {} }, 3)).toEqual({ value: 0, total: 5, step: 'plan' });
    expect(progressOf({ state: 'RUNNING', stage: 'views', views: { a: view, b: view } }, 3)).toMatchObject({
      value: 3,
      step: 'SQL + load (2/3 views)',
    });
    expect(progressOf({ state: 'RUNNING', stage: 'publish', views: {} }, 3).value).toBe(4);
    expect(progressOf({ state: 'SUCCEEDED', stage: 'done', views: {} }, 3).value).toBe(5);
  });

  it('renders the status with the cutoff age', () => {
    expect(age(75)).toBe('1 min 15 s');
    const text = renderStatus({
      now: '2025-06-01T12:00:00.000Z',
      batch: { version: 4, cutoff: '2025-06-01T11:58:00.000Z', lagSeconds: 120 },
      lastRun: {
        id: 'r1',
        state: 'SUCCEEDED',
        stage: 'done',
        startedAt: '2025-06-01T11:58:10.000Z',
        finishedAt: '2025-06-01T11:58:11.500Z',
        durationMs: 1500,
        version: 4,
        cutoff: '2025-06-01T11:58:00.000Z',
        previousCutoff: null,
        views: { v: { rows: 3, sqlMs: 10, loadMs: 20 } },
        timings: {},
      },
      speed: { shards: [{ shard: 'shardId-000000000000', lagMs: 2000 }] },
      archive: { shards: [{ shard: 'shardId-000000000000', arrival: '2025-06-01T11:59:00.000Z', records: 12 }] },
      windowSeconds: 60,
      dedupHorizonSeconds: 604800,
      maxBatchLagSeconds: 21600,
      poison: { count: 2 },
    });
    expect(text).toContain('version 4, cutoff 2025-06-01T11:58:00.000Z (2 min 0 s ago)');
    expect(text).toContain('r1 SUCCEEDED');
    expect(text).toContain('2 record(s)');
    expect(text).toMatch(/shardId-000000000000.*2 s.*2025-06-01T11:59:00.000Z.*12/);
  });
});

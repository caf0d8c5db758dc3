/**
 * Pure parts of incremental runs (docs/batch-layer.md "Increments"): which views a run
 * increments or rebuilds and why, the arrival range it reads, the copy-on-write partition map
 * of a manifest, the merge of a partition with an increment, and the body of POST /batch/runs
 * (schema, and the handler's 400s naming the field).
 */
import { describe, expect, it } from 'vitest';
import { type BatchRuns, createBatchRunsHandler } from '../../functions/api/batch.ts';
import type { BatchRow } from '../../functions/batch/engine.ts';
import { mergeRows, partitionRefs, rowsByPartition, STORAGE_LAYOUT } from '../../functions/batch/load.ts';
import { executionInput } from '../../functions/batch/runs.ts';
import { planViews, readFrom } from '../../functions/batch/steps.ts';
import { BatchTaskEventSchema } from '../../functions/batch/task.ts';
import { StartRunRequestSchema } from '../../functions/contract/api.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { batchPartitionPk, batchPk, pad13 } from '../../functions/core/keys.ts';
import { count, view, viewFingerprint } from '../../functions/core/views.ts';
import { apiEvent, lambdaContext, parse, silentLogger } from '../support/api.ts';

const revenue = DEMO_VIEWS.find((v) => v.name === 'revenue_by_country')!;
const pageViews = DEMO_VIEWS.find((v) => v.name === 'page_views')!;
const DAY = 86_400_000;
const D0 = Date.UTC(2030, 0, 1);

const H = 604_800_000;
const entry = (v: (typeof DEMO_VIEWS)[number], fingerprint = viewFingerprint(v)) => ({
  rows: 3,
  loaded: true,
  fingerprint,
  horizonMs: H,
  layout: STORAGE_LAYOUT,
  partitions: { [pad13(D0)]: 4 },
});

describe('planViews', () => {
  const pointer = { version: 7, cutoff: D0 + 3_600_000 };

  it('increments every view the published manifest holds with the same declaration', () => {
    const base = { views: Object.fromEntries(DEMO_VIEWS.map((v) => [v.name, entry(v)])) };
    expect(planViews(DEMO_VIEWS, pointer, base, H)).toEqual(
      Object.fromEntries(DEMO_VIEWS.map((v) => [v.name, { mode: 'increment', base: 7, since: pointer.cutoff }])),
    );
  });

  it('rebuilds a new view, a changed one, one from a manifest without a map, and what the run asks for', () => {
    const changed = view({
      name: revenue.name,
      filter: { type: 'purchase' },
      dimensions: ['country'],
      grain: 'hour',
      metrics: { orders: count() },
    });
    const base = {
      views: {
        events_by_type: entry(DEMO_VIEWS[0]!),
        revenue_by_country: entry(revenue),
        page_views: { rows: 1, loaded: true, partitions: ['page_views#0000000007#0'] },
      },
    };
    const views = [DEMO_VIEWS[0]!, changed, pageViews, view({ name: 'fresh', dimensions: [], grain: 'day', metrics: { n: count() } })];
    expect(planViews(views, pointer, base, H)).toEqual({
      events_by_type: { mode: 'increment', base: 7, since: pointer.cutoff },
      revenue_by_country: { mode: 'rebuild', reason: 'declaration changed' },
      page_views: { mode: 'rebuild', reason: 'declaration changed' },
      fresh: { mode: 'rebuild', reason: 'new view' },
    });
    expect(planViews(views, pointer, base, H, { view: 'events_by_type' }).events_by_type).toEqual({ mode: 'rebuild', reason: 'requested' });
    expect(Object.values(planViews(views, pointer, base, H, { rebuild: true }))).toEqual(
      views.map(() => ({ mode: 'rebuild', reason: 'requested' })),
    );
    // Nothing published yet: every view is new.
    expect(Object.values(planViews(views, undefined, undefined, H))).toEqual(views.map(() => ({ mode: 'rebuild', reason: 'new view' })));
  });

  it('rebuilds a view whose rows are stored in another layout (a version written before blocks)', () => {
    const { layout: _, ...before } = entry(pageViews);
    const base = { views: { ...Object.fromEntries(DEMO_VIEWS.map((v) => [v.name, entry(v)])), page_views: before } };
    expect(planViews(DEMO_VIEWS, pointer, base, H).page_views).toEqual({ mode: 'rebuild', reason: 'storage changed' });
    expect(planViews(DEMO_VIEWS, pointer, base, H).events_by_type).toMatchObject({ mode: 'increment' });
    // Blocks without inherited blocks (blocks-1, the layout before per-block copy-on-write) merge as chains of one;
    // a layout this code does not know is rebuilt.
    for (const [layout, mode] of [
      ['blocks-1', 'increment'],
      ['blocks-9', 'rebuild'],
    ] as const) {
      const other = { views: { ...base.views, page_views: { ...entry(pageViews), layout } } };
      expect(planViews(DEMO_VIEWS, pointer, other, H).page_views, layout).toMatchObject({ mode });
    }
  });

  it('rebuilds every view when the dedup horizon changed', () => {
    const base = { views: Object.fromEntries(DEMO_VIEWS.map((v) => [v.name, entry(v)])) };
    expect(Object.values(planViews(DEMO_VIEWS, pointer, base, 120_000))).toEqual(
      DEMO_VIEWS.map(() => ({ mode: 'rebuild', reason: 'declaration changed' })),
    );
  });

  it('reads from the earliest look-back of the increments, or all history when a view rebuilds', () => {
    const H = 120_000;
    expect(readFrom([{ mode: 'increment', since: 600_000 }], H)).toBe(480_000);
    expect(
      readFrom(
        [
          { mode: 'increment', since: 600_000 },
          { mode: 'increment', since: 300_000 },
        ],
        H,
      ),
    ).toBe(180_000);
    expect(readFrom([{ mode: 'increment', since: 600_000 }, { mode: 'rebuild' }], H)).toBeNull();
    expect(readFrom([], H)).toBeNull();
  });
});

describe('the copy-on-write partition map', () => {
  const row = (bucket: number, dims: (string | null)[], values: Record<string, string | null>): BatchRow => ({ bucket, dims, values });
  const rv = (orders: string, revenueSum: string, min: string | null, max: string | null, count: string) => ({
    orders__count: orders,
    revenue__sum: revenueSum,
    min_order__min: min,
    max_order__max: max,
    avg_order__sum: revenueSum,
    avg_order__count: count,
  });

  it('groups rows by partition start (13 digits, in order) and names keys as the writers wrote them', () => {
    const rows = [row(D0 + 40 * DAY, ['DE'], rv('1', '1', '1', '1', '1')), row(D0 + 3_600_000, ['FR'], rv('1', '2', '2', '2', '1'))];
    const parts = rowsByPartition(revenue, rows);
    expect([...parts.keys()]).toEqual([pad13(D0 - (D0 % (30 * DAY))), pad13(D0 + 40 * DAY - ((D0 + 40 * DAY) % (30 * DAY)))]);
    const refs = partitionRefs('revenue_by_country', 9, { partitions: Object.fromEntries([...parts.keys()].map((p, i) => [p, 8 + i])) });
    expect(refs.map((r) => r.pk)).toEqual([
      batchPk('revenue_by_country', 8, D0 + 3_600_000, 'hour'),
      batchPk('revenue_by_country', 9, D0 + 40 * DAY, 'hour'),
    ]);
    // A manifest from before increments: its own keys.
    expect(partitionRefs('v', 3, { partitions: [batchPartitionPk('v', 3, D0)] })).toEqual([
      { view: 'v', start: pad13(D0), writer: 3, pk: batchPartitionPk('v', 3, D0) },
    ]);
    expect(partitionRefs('v', 3, undefined)).toEqual([]);
  });

  it('merges a partition with an increment cell by cell with the monoids, keeping cells only one side has', () => {
    const b = D0 + 3_600_000;
    const base = [row(b, ['DE'], rv('2', '10.5', '3', '7.5', '2')), row(b, [null], rv('1', '0', null, null, '0'))];
    const increment = [row(b, ['DE'], rv('1', '0.25', '0.25', '0.25', '1')), row(b + 3_600_000, ['DE'], rv('1', '4', '4', '4', '1'))];
    expect(mergeRows(revenue, base, increment)).toEqual([
      row(b, ['DE'], rv('3', '10.75', '0.25', '7.5', '3')),
      row(b, [null], rv('1', '0', null, null, '0')),
      row(b + 3_600_000, ['DE'], rv('1', '4', '4', '4', '1')),
    ]);
    expect(mergeRows(revenue, base, [])).toEqual(base);
  });
});

describe('POST /batch/runs body', () => {
  it('takes {}, {"rebuild": true} or {"view": NAME}; refuses anything else naming the field', () => {
    for (const ok of [{}, { rebuild: true }, { rebuild: false }, { view: 'page_views' }])
      expect(StartRunRequestSchema.safeParse(ok).success).toBe(true);
    const field = (body: unknown) => {
      const r = StartRunRequestSchema.safeParse(body);
      return r.success ? undefined : r.error.issues[0]?.path.join('.');
    };
    expect(field({ rebuild: 'yes' })).toBe('rebuild');
    expect(field({ view: 3 })).toBe('view');
    expect(field({ view: '' })).toBe('view');
    expect(field({ rebuild: true, view: 'page_views' })).toBe('view');
  });

  it("reaches the plan step of a Step Functions run as the execution input, a schedule's fields ignored", () => {
    const plan = (input: unknown) => BatchTaskEventSchema.safeParse({ step: 'plan', runId: 'run-1', input });
    expect(plan({ runId: 'run-1', view: 'page_views' }).data).toMatchObject({ input: { view: 'page_views' } });
    expect(plan({ trigger: 'schedule' }).success).toBe(true);
    expect(plan({ rebuild: 'yes' }).error?.issues[0]?.path).toEqual(['input', 'rebuild']);
  });

  const started: unknown[] = [];
  const runs: BatchRuns = {
    async start(request) {
      started.push(request);
      return { id: 'run-1', state: 'RUNNING' };
    },
    viewNames: () => DEMO_VIEWS.map((v) => v.name),
    get: async () => undefined,
    rollback: async () => ({ status: 'unknown', message: 'no' }),
  };
  const handler = createBatchRunsHandler(() => runs, silentLogger());
  const post = async (body: string | null) => parse(await handler(apiEvent('POST', '/batch/runs', { body }), lambdaContext()));

  it('hands the request to the run; 400 naming the field, `view` for an unknown view', async () => {
    started.length = 0;
    expect(await post(null)).toMatchObject({ status: 202, body: { id: 'run-1' } });
    expect(await post('{}')).toMatchObject({ status: 202 });
    expect(await post('{"rebuild": true}')).toMatchObject({ status: 202 });
    expect(await post('{"view": "page_views"}')).toMatchObject({ status: 202 });
    expect(started).toEqual([{}, {}, { rebuild: true }, { view: 'page_views' }]);
    expect(await post('{"view": "nope"}')).toMatchObject({
      status: 400,
      body: { field: 'view', error: expect.stringMatching(/no view named "nope"/) },
    });
    expect(await post('{"rebuild": 1}')).toMatchObject({ status: 400, body: { field: 'rebuild', error: 'rebuild must be true or false' } });
    expect(await post('{"rebuilt": true}')).toMatchObject({ status: 400, body: { field: 'rebuilt' } });
    expect(await post('[]')).toMatchObject({ status: 400, body: { field: 'body' } });
    expect(await post('{not json')).toMatchObject({ status: 400, body: { field: 'body' } });
    expect(started).toHaveLength(4);
  });

  it('refuses a rebuild with 409 naming the field while another run is going (it would not happen)', async () => {
    const busy = createBatchRunsHandler(
      () => ({ ...runs, start: async () => ({ id: 'run-0', state: 'RUNNING', alreadyRunning: true }) }),
      silentLogger(),
    );
    const send = async (body: string) => parse(await busy(apiEvent('POST', '/batch/runs', { body }), lambdaContext()));
    expect(await send('{"rebuild": true}')).toMatchObject({
      status: 409,
      body: { field: 'rebuild', error: expect.stringMatching(/run-0/) },
    });
    expect(await send('{"view": "page_views"}')).toMatchObject({ status: 409, body: { field: 'view' } });
    expect(await send('{}')).toMatchObject({ status: 202, body: { id: 'run-0', alreadyRunning: true } });
  });
});

describe('the Step Functions execution input', () => {
  it('carries the run id and the request, which the Plan state passes to the plan step', () => {
    expect(JSON.parse(executionInput('run-1', { rebuild: true }))).toEqual({ runId: 'run-1', rebuild: true });
    expect(JSON.parse(executionInput('run-2', { view: 'page_views' }))).toEqual({ runId: 'run-2', view: 'page_views' });
    expect(JSON.parse(executionInput('run-3'))).toEqual({ runId: 'run-3' });
  });
});

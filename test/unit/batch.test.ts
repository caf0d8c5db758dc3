/**
 * Pure parts of the archive and batch layer: object keys and manifest
 * entries, the completeness check, result-row conversion, the rollback rule,
 * Athena helpers, the batch-task event contract and the state machine shape.
 */
import { describe, expect, it } from 'vitest';
import { objectManifestEntries, objectManifestEntry, parseRawObjectKey, rawObjectKey } from '../../functions/archive/layout.ts';
import { requestToken, resultRows, retryThrottled } from '../../functions/batch/athena.ts';
import { newRunId, RUN_ID_RE } from '../../functions/batch/control.ts';
import { toBatchRows } from '../../functions/batch/engine.ts';
import { rowItem, rowPartitions } from '../../functions/batch/load.ts';
import { engineFromEnv } from '../../functions/batch/pipeline.ts';
import { rollbackAllowed } from '../../functions/batch/publish.ts';
import { BatchTaskEventSchema, stepError } from '../../functions/batch/task.ts';
import { checkCompleteness } from '../../functions/batch/verify.ts';
import { batchStateMachineDefinition } from '../../functions/contract/state-machine.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS, speedExpiry } from '../../functions/core/settings.ts';

const seq = (n: number) => String(n).padStart(64, '0');
const revenue = DEMO_VIEWS.find((v) => v.name === 'revenue_by_country')!;

describe('archive layout', () => {
  it('keys objects by arrival hour, shard and padded sequence range, and parses them back', () => {
    const t = Date.UTC(2030, 0, 2, 3, 59, 59, 999);
    const key = rawObjectKey('shardId-000000000001', t, seq(5), seq(17));
    expect(key).toBe(`raw/dt=2030-01-02/hr=03/shardId-000000000001/${seq(5)}-${seq(17)}.json.gz`);
    expect(parseRawObjectKey(key)).toEqual({
      key,
      hour: Date.UTC(2030, 0, 2, 3),
      shard: 'shardId-000000000001',
      firstSeq: seq(5),
      lastSeq: seq(17),
    });
    expect(parseRawObjectKey('raw/dt=2030-01-02/hr=03/x/1-2.json.gz')).toBeUndefined();
    expect(parseRawObjectKey('raw/something-else.txt')).toBeUndefined();
  });

  it('manifest entries round-trip to object keys and line counts', () => {
    const hour = Date.UTC(2030, 0, 2, 3);
    expect(objectManifestEntries(hour, 's', [objectManifestEntry(seq(1), seq(9), 42)])).toEqual([
      { key: rawObjectKey('s', hour, seq(1), seq(9)), lines: 42 },
    ]);
    expect(() => objectManifestEntries(hour, 's', ['garbage'])).toThrow(/malformed archive manifest entry "garbage"/);
  });
});

describe('checkCompleteness', () => {
  const expected = [
    { key: 'raw/a', lines: 3 },
    { key: 'raw/b', lines: 2 },
  ];
  it('passes when every recorded object was read whole; extra objects are fine', () => {
    const reads = new Map([
      ['raw/a', { lines: 3, covered: 3 }],
      ['raw/b', { lines: 2, covered: 1 }],
      ['raw/orphan', { lines: 4, covered: 4 }],
    ]);
    expect(checkCompleteness(expected, reads)).toMatchObject({ complete: true, objects: 3, records: 8, extraObjects: 1 });
  });
  it('fails on a missing object and on a short one', () => {
    expect(checkCompleteness(expected, new Map([['raw/a', { lines: 3, covered: 3 }]]))).toMatchObject({
      complete: false,
      missing: [{ key: 'raw/b', lines: 2 }],
    });
    expect(
      checkCompleteness(
        expected,
        new Map([
          ['raw/a', { lines: 1, covered: 1 }],
          ['raw/b', { lines: 2, covered: 2 }],
        ]),
      ),
    ).toMatchObject({ complete: false, missing: [], mismatched: [{ key: 'raw/a', expected: 3, read: 1 }] });
  });
});

describe('result rows', () => {
  it('maps columns by position, normalizes decimals, keeps NULL min/max and dimensions', () => {
    const rows = toBatchRows(revenue, [['1893456000000', null, '3', '12.500000000', '1.000000000', '10.000000000', '12.500000000', '3']]);
    expect(rows).toEqual([
      {
        bucket: 1893456000000,
        dims: [null],
        values: {
          orders__count: '3',
          revenue__sum: '12.5',
          min_order__min: '1',
          max_order__max: '10',
          avg_order__sum: '12.5',
          avg_order__count: '3',
        },
      },
    ]);
    expect(() => toBatchRows(revenue, [['1', 'DE']])).toThrow(/expected 8 result columns, received 2/);
  });

  it('writes exact DynamoDB numbers, leaves empty min/max out, and spreads rows over partitions', () => {
    const [row] = toBatchRows(revenue, [['1893456000000', 'DE', '1', '0', null, null, '0', '0']]);
    const item = rowItem(revenue, 7, { ...row!, values: { ...row!.values, revenue__sum: '12345678901234567890.123456789' } });
    expect(item).toMatchObject({
      view: { S: 'revenue_by_country' },
      version: { N: '7' },
      dims: { L: [{ S: 'DE' }] },
      revenue__sum: { N: '12345678901234567890.123456789' },
    });
    expect(item.min_order__min).toBeUndefined();
    expect(item.pk?.S).toBe('revenue_by_country#0000000007#1892160000000');
    expect(rowPartitions(revenue, 7, [row!, { ...row!, bucket: 1893456000000 + 40 * 86_400_000 }])).toHaveLength(2);
  });
});

describe('rollbackAllowed', () => {
  const s = DEFAULT_SETTINGS;
  const now = Date.UTC(2030, 0, 10, 12, 0, 0);
  it('allows a cutoff whose speed windows outlive one more lag-alarm period, and refuses an older one', () => {
    const ok = rollbackAllowed(now - 3_600_000, now, s);
    expect(ok.allowed).toBe(true);
    const edge = ok.oldestCutoff;
    expect(rollbackAllowed(edge, now, s).allowed).toBe(true);
    const old = rollbackAllowed(edge - 60_000, now, s);
    expect(old.allowed).toBe(false);
    expect(old.reason).toMatch(/older than the speed layer's coverage allows/);
    // The rule is exactly: the speed window at the cutoff expires no sooner than one lag period from now.
    expect(speedExpiry(edge, s)).toBeGreaterThanOrEqual(Math.ceil(now / 1000) + s.maxBatchLagSeconds);
    expect(speedExpiry(edge - 60_000, s)).toBeLessThan(Math.ceil(now / 1000) + s.maxBatchLagSeconds);
  });
});

describe('Athena helpers', () => {
  it('derives a stable idempotency token of an accepted length', () => {
    const t = requestToken('run-1', 'view:x', 'SELECT 1');
    expect(t).toHaveLength(64);
    expect(requestToken('run-1', 'view:x', 'SELECT 1')).toBe(t);
    expect(requestToken('run-2', 'view:x', 'SELECT 1')).not.toBe(t);
  });
  it('drops the header row of the first page only and keeps NULLs', () => {
    const set = { Rows: [{ Data: [{ VarCharValue: 'bucket' }] }, { Data: [{ VarCharValue: '1' }, {}] }] };
    expect(resultRows(set, true)).toEqual([['1', null]]);
    expect(resultRows(set, false)).toHaveLength(2);
  });
  it('retries throttling with backoff, and nothing else', async () => {
    let calls = 0;
    const throttled = Object.assign(new Error('slow down'), { name: 'TooManyRequestsException' });
    const sleeps: number[] = [];
    const sleep = async (ms: number) => {
      sleeps.push(ms);
    };
    expect(
      await retryThrottled(async () => {
        if (++calls < 3) throw throttled;
        return 'ok';
      }, sleep),
    ).toBe('ok');
    expect(sleeps).toHaveLength(2);
    await expect(retryThrottled(() => Promise.reject(new Error('syntax error')), sleep)).rejects.toThrow('syntax error');
    await expect(retryThrottled(() => Promise.reject(throttled), sleep, 3)).rejects.toThrow('slow down');
  });
});

describe('batch task contract', () => {
  it('accepts the four steps and names the bad field', () => {
    expect(BatchTaskEventSchema.safeParse({ step: 'plan', runId: 'run-1' }).success).toBe(true);
    expect(BatchTaskEventSchema.safeParse({ step: 'view', runId: 'run-1', version: 2, cutoff: 60_000, view: 'v' }).success).toBe(true);
    expect(BatchTaskEventSchema.safeParse({ step: 'publish', runId: 'run-1', skipped: true, version: null, cutoff: null }).success).toBe(
      true,
    );
    expect(BatchTaskEventSchema.safeParse({ step: 'fail', runId: 'run-1', error: { Error: 'X', Cause: 'y' } }).success).toBe(true);
    const bad = BatchTaskEventSchema.safeParse({ step: 'view', runId: 'run 1', version: 0, cutoff: 1, view: 'v' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues.map((i) => i.path.join('.')).sort()).toEqual(['runId', 'version']);
    expect(BatchTaskEventSchema.safeParse({ step: 'dance', runId: 'run-1' }).success).toBe(false);
  });
  it('turns a Catch error object into a readable message', () => {
    expect(
      stepError({
        Error: 'IncompleteArchiveError',
        Cause: JSON.stringify({ errorType: 'IncompleteArchiveError', errorMessage: 'the archive is incomplete' }),
      }),
    ).toBe('IncompleteArchiveError: the archive is incomplete');
    expect(stepError({ Error: 'States.Timeout', Cause: 'timed out' })).toBe('States.Timeout: timed out');
    expect(stepError(undefined)).toBe('the run failed');
  });
  it('run ids sort by start time and are valid execution names', () => {
    const a = newRunId(Date.UTC(2030, 0, 1, 0, 0, 0));
    const b = newRunId(Date.UTC(2030, 0, 1, 0, 0, 1));
    expect(a < b).toBe(true);
    expect(a).toMatch(RUN_ID_RE);
    expect(a).toMatch(/^run-20300101T000000000Z-[0-9a-f]{6}$/);
  });
});

describe('engine selection', () => {
  const clients = { s3: {} as never, athena: {} as never };
  const config = { buckets: { raw: 'raw-bucket', failures: 'f' } };
  it('defaults to duckdb, selects athena with its names, and names what is missing or wrong', () => {
    expect(engineFromEnv(clients, config, {}).name).toBe('duckdb');
    expect(
      engineFromEnv(clients, config, {
        TANDEM_BATCH_ENGINE: 'athena',
        TANDEM_ATHENA_DATABASE: 'tandem',
        TANDEM_ATHENA_TABLE: 'raw',
        TANDEM_ATHENA_WORKGROUP: 'wg',
      }).name,
    ).toBe('athena');
    expect(() => engineFromEnv(clients, config, { TANDEM_BATCH_ENGINE: 'athena' })).toThrow(/TANDEM_ATHENA_DATABASE is not set/);
    expect(() => engineFromEnv(clients, config, { TANDEM_BATCH_ENGINE: 'spark' })).toThrow(/must be athena or duckdb, received "spark"/);
    expect(() =>
      engineFromEnv(clients, config, {
        TANDEM_BATCH_ENGINE: 'athena',
        TANDEM_ATHENA_DATABASE: 'Bad"Name',
        TANDEM_ATHENA_TABLE: 'raw',
        TANDEM_ATHENA_WORKGROUP: 'wg',
      }),
    ).toThrow(/lowercase/);
  });
});

describe('state machine definition', () => {
  const def = batchStateMachineDefinition('arn:aws:lambda:us-east-1:1:function:f') as {
    StartAt: string;
    States: Record<string, Record<string, unknown>>;
  };
  it('runs Plan -> Views (Map) -> Publish, every task retried and caught into MarkFailed -> Failed', () => {
    expect(def.StartAt).toBe('Plan');
    expect(def.States.Plan!.Next).toBe('Views');
    expect(def.States.Views!.Type).toBe('Map');
    expect(def.States.Views!.Next).toBe('Publish');
    expect(def.States.MarkFailed!.Next).toBe('Failed');
    expect(def.States.Failed!.Type).toBe('Fail');
    for (const name of ['Plan', 'Views', 'Publish']) {
      expect(def.States[name]!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'MarkFailed' }]);
    }
    for (const name of ['Plan', 'Publish', 'MarkFailed']) expect(def.States[name]!.Retry).toBeDefined();
    // The run id is the execution name: a schedule naming executions per window absorbs duplicate firings.
    expect(def.States.Plan!.Parameters).toEqual({ step: 'plan', 'runId.$': '$$.Execution.Name' });
  });
});

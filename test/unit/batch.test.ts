/**
 * Pure parts of the archive and batch layer: object keys and manifest
 * entries, the completeness check, result-row conversion, the rollback rule,
 * Athena helpers, the batch-task event contract and the state machine shape.
 */

import { describe, expect, it } from 'vitest';
import { objectManifestEntries, objectManifestEntry, parseRawObjectKey, rawObjectKey } from '../../functions/archive/layout.ts';
import {
  type AthenaQueries,
  athenaEngine,
  objectReadsOf,
  parseAthenaCsv,
  retryThrottled,
  runMarkers,
  stopRunQueries,
  UNLOAD_GROUPS,
  unloadGroupOf,
  unloadRows,
  unloadSql,
} from '../../functions/batch/athena.ts';
import { newRunId, RUN_ID_RE } from '../../functions/batch/control.ts';
import { readHours, toBatchRows, viewReadFrom } from '../../functions/batch/engine.ts';
import { blockItems, rowPartitions, rowsOfItems } from '../../functions/batch/load.ts';
import { engineFromEnv } from '../../functions/batch/pipeline.ts';
import { rollbackAllowed } from '../../functions/batch/publish.ts';
import { hourPrefixes } from '../../functions/batch/stage.ts';
import { BatchTaskEventSchema, stepError } from '../../functions/batch/task.ts';
import { checkCompleteness, IncompleteArchiveError } from '../../functions/batch/verify.ts';
import { batchStateMachineDefinition } from '../../functions/contract/state-machine.ts';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { DEFAULT_SETTINGS, speedExpiry } from '../../functions/core/settings.ts';
import { rawReadRange } from '../../functions/core/sql.ts';

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
  const hour = Date.UTC(2030, 0, 2, 3);
  const obj = (shard: string, first: number, last: number, lines: number) => ({
    key: rawObjectKey(shard, hour, seq(first), seq(last)),
    lines,
    hour,
    shard,
  });
  const [a, b, c] = [obj('s1', 1, 3, 3), obj('s1', 4, 5, 2), obj('s2', 1, 4, 4)];
  const expected = [a, b, c];
  const read = (lines: number, covered = lines, bytes = 10) => ({ lines, covered, bytes });
  it('passes when every recorded object was read whole; extra objects are fine and counted as read', () => {
    const reads = new Map([
      [a.key, read(3)],
      [b.key, read(2, 1)],
      [c.key, read(4)],
      [rawObjectKey('s1', hour, seq(1), seq(5)), read(5, 5, 20)],
    ]);
    expect(checkCompleteness(expected, reads)).toMatchObject({
      complete: true,
      short: [],
      objects: 4,
      records: 13,
      extraObjects: 1,
      rawObjectsRead: 4,
      rawRowsRead: 14,
      rawBytesRead: 50,
    });
  });
  it('fails on a missing object and on a short one, naming the (hour, shard) and its counts', () => {
    expect(
      checkCompleteness(
        expected,
        new Map([
          [a.key, read(3)],
          [c.key, read(4)],
        ]),
      ),
    ).toMatchObject({ complete: false, missing: [b], short: [{ hour, shard: 's1', recorded: 5, read: 3 }] });
    const truncated = checkCompleteness(
      expected,
      new Map([
        [a.key, read(1)],
        [b.key, read(2)],
        [c.key, read(4)],
      ]),
    );
    expect(truncated).toMatchObject({ complete: false, missing: [], mismatched: [{ key: a.key, expected: 3, read: 1 }] });
    expect(new IncompleteArchiveError(truncated).message).toBe(
      `the archive is incomplete: 1 raw object(s) with the wrong number of records, e.g. ${a.key} (1 read, 3 written); ` +
        '1 (arrival hour, shard) pair(s) not read whole, e.g. 2030-01-02T03h s1 (3 of 5 recorded records read from its listed objects); ' +
        'nothing was published',
    );
  });
  it('an extra object with more lines does not hide a missing listed one', () => {
    // s1's listed objects hold 5 lines; a crashed attempt's [1-5] holds 5 too, but [4-5] is gone: the run must fail.
    const reads = new Map([
      [a.key, read(3)],
      [c.key, read(4)],
      [rawObjectKey('s1', hour, seq(1), seq(5)), read(5)],
    ]);
    expect(checkCompleteness(expected, reads)).toMatchObject({ complete: false, missing: [b], extraObjects: 1 });
  });
});

describe('read ranges', () => {
  const H = 3_600_000;
  const day = Date.UTC(2030, 0, 2);
  it('a session reads the hours from hour(from) to hour(cutoff - 1); null from reads all history', () => {
    expect(readHours(day + 5 * H, day + H + 1)).toEqual({ first: day + H, last: day + 4 * H });
    expect(readHours(day + 5 * H + 1, null)).toEqual({ first: null, last: day + 5 * H });
  });
  it('lists whole days by day prefix and the partial days hour by hour', () => {
    expect(hourPrefixes(null, day)).toEqual(['raw/']);
    expect(hourPrefixes(day - 2 * H, day + 26 * H)).toEqual([
      'raw/dt=2030-01-01/hr=22/',
      'raw/dt=2030-01-01/hr=23/',
      'raw/dt=2030-01-02/',
      'raw/dt=2030-01-03/hr=00/',
      'raw/dt=2030-01-03/hr=01/',
      'raw/dt=2030-01-03/hr=02/',
    ]);
    expect(hourPrefixes(day, day + 23 * H)).toEqual(['raw/dt=2030-01-02/']);
    expect(hourPrefixes(day + H, day)).toEqual([]);
    // Only the hours `listed` keeps: a day with one hour left out is listed hour by hour.
    const listed = (h: number) => h !== day + 5 * H && h < day + 25 * H;
    expect(hourPrefixes(day - H, day + 26 * H, listed)).toEqual([
      'raw/dt=2030-01-01/hr=23/',
      ...Array.from({ length: 24 }, (_, i) => i)
        .filter((i) => i !== 5)
        .map((i) => `raw/dt=2030-01-02/hr=${String(i).padStart(2, '0')}/`),
      'raw/dt=2030-01-03/hr=00/',
    ]);
    expect(hourPrefixes(day, day + 47 * H, (h) => h >= day + 24 * H)).toEqual(['raw/dt=2030-01-03/']);
  });
  it('a view that needs arrivals before the session range fails instead of reading less', () => {
    const session = { cutoff: day + 10 * H, from: day + 2 * H + 1800_000 };
    const need = (horizonMs: number, since?: number) => rawReadRange(session.cutoff, horizonMs, since).from;
    expect(viewReadFrom(session, revenue, { horizonMs: 2 * H, since: day + 4 * H + 5 })).toBe(need(2 * H, day + 4 * H + 5));
    // Before from itself but within its hour: the session reads whole hours.
    expect(viewReadFrom(session, revenue, { horizonMs: 2 * H, since: day + 4 * H })).toBe(need(2 * H, day + 4 * H));
    expect(() => viewReadFrom(session, revenue, { horizonMs: 3 * H, since: day + 4 * H })).toThrow(
      new RegExp(
        String.raw`view revenue_by_country needs the arrivals from 2030-01-02T01:00:00\.\d{3}Z, ` +
          String.raw`but the session reads only from 2030-01-02T02:00:00\.000Z`,
      ),
    );
    expect(() => viewReadFrom(session, revenue, { horizonMs: H })).toThrow(/needs the arrivals from the beginning/);
    expect(viewReadFrom({ ...session, from: null }, revenue, { horizonMs: H })).toBeNull();
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

  it('packs exact decimal text into block items, keeps empty min/max null, and spreads rows over partitions', () => {
    const [row] = toBatchRows(revenue, [['1893456000000', 'DE', '1', '0', null, null, '0', '0']]);
    const exact = { ...row!, values: { ...row!.values, revenue__sum: '12345678901234567890.123456789' } };
    const [item] = blockItems(revenue, 7, [exact]);
    expect(item).toMatchObject({ view: { S: 'revenue_by_country' }, version: { N: '7' }, n: { N: '1' } });
    expect(item!.rows!.S).toContain('"12345678901234567890.123456789"');
    expect(rowsOfItems(revenue, [item!])).toEqual([exact]);
    expect(rowsOfItems(revenue, [item!])[0]!.values.min_order__min).toBeNull();
    expect(item!.pk?.S).toBe('revenue_by_country#0000000007#1892160000000');
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

describe('Athena from the Lambda', () => {
  it('the engine only names the path: opening it says the state machine runs the queries', async () => {
    const engine = athenaEngine();
    expect(engine.name).toBe('athena');
    await expect(engine.open(60_000, 'run-1')).rejects.toThrow(/the batch state machine runs them/);
  });
  it("stops the workgroup's running queries of the run only", async () => {
    const [unload, objects] = runMarkers('run-1');
    const running = [
      { id: 'q1', sql: `UNLOAD (SELECT 1) TO 's3://b/unload/run-1/v/a1/'` },
      { id: 'q2', sql: `SELECT 1\n${objects}attempt 1` },
      { id: 'q3', sql: `UNLOAD (SELECT 1) TO 's3://b/unload/run-10/v/a1/'` },
      { id: 'q4', sql: 'SELECT 2' },
    ];
    const stopped: string[] = [];
    const queries: AthenaQueries = {
      statistics: async () => ({ engineMs: 0 }),
      running: async (workgroup) => (workgroup === 'wg' ? running : []),
      stop: async (id) => {
        stopped.push(id);
      },
    };
    expect(unload).toBe('/unload/run-1/');
    expect(await stopRunQueries(queries, 'wg', 'run-1')).toEqual(['q1', 'q2']);
    expect(stopped).toEqual(['q1', 'q2']);
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
  const clients = { s3: {} as never };
  const config = { buckets: { raw: 'raw-bucket', failures: 'f' } };
  it('defaults to duckdb, selects athena, and names a wrong one', () => {
    expect(engineFromEnv(clients, config, {}).name).toBe('duckdb');
    expect(engineFromEnv(clients, config, { TANDEM_BATCH_ENGINE: 'athena' }).name).toBe('athena');
    expect(() => engineFromEnv(clients, config, { TANDEM_BATCH_ENGINE: 'spark' })).toThrow(/must be athena or duckdb, received "spark"/);
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
    expect(def.States.Plan!.Parameters).toEqual({ step: 'plan', 'runId.$': '$$.Execution.Name', 'input.$': '$' });
  });
});

describe('the Athena path of the state machine: pure parts', () => {
  const view = DEMO_VIEWS[0]!;
  const DAY = 86_400_000;

  it("reads Athena's CSV result: quoted values, doubled quotes, NULL as an empty unquoted field, newlines inside quotes", () => {
    const csv = '"path","lines","note"\n"s3://b/raw/a.json.gz","3","say ""hi"""\n"s3://b/raw/b.json.gz",,"two\nlines"\n';
    expect(parseAthenaCsv(csv)).toEqual([
      ['s3://b/raw/a.json.gz', '3', 'say "hi"'],
      ['s3://b/raw/b.json.gz', null, 'two\nlines'],
    ]);
    expect(parseAthenaCsv('"a"\r\n"1"\r\n')).toEqual([['1']]);
    expect(() => parseAthenaCsv('"a"\n"open')).toThrow(/unterminated/);
  });

  it('turns the objects query rows into reads keyed by object key', () => {
    const reads = objectReadsOf([['s3://raw-bucket/raw/dt=2030-01-01/hr=00/s/1-2.json.gz', '2', '1', '99']], '');
    expect([...reads]).toEqual([['raw/dt=2030-01-01/hr=00/s/1-2.json.gz', { lines: 2, covered: 1, bytes: 99 }]]);
  });

  it('wraps a view in an UNLOAD per attempt, partitioned by load group, columns as text', () => {
    const { head, tail } = unloadSql(view, 'SELECT 1', 's3://results/athena/unload/run-1/v/');
    const sql = `${head}2${tail}`;
    expect(sql).toContain("TO 's3://results/athena/unload/run-1/v/a2/'");
    expect(sql).toContain("partitioned_by = ARRAY['g']");
    expect(sql).toContain("format = 'JSON'");
    expect(sql).toContain('CAST(c0 AS VARCHAR) AS c0');
    expect(sql).toMatch(/AS g\n/);
    expect(() => unloadSql(view, 'SELECT 1', "s3://results/it's/")).toThrow(/UNLOAD location/);
  });

  it('puts every partition wholly in one of at most 100 groups, consecutive partitions in different ones', () => {
    expect(UNLOAD_GROUPS).toBeLessThanOrEqual(100);
    const g = (day: number) => unloadGroupOf({ grain: 'minute' }, day * DAY);
    expect(g(20_000)).not.toBe(g(20_001));
    expect(g(20_000)).toBe(g(20_000 + UNLOAD_GROUPS));
  });

  it('reads UNLOAD JSON lines back as batch rows, decimals exact, absent columns NULL', () => {
    const n = 1 + view.dimensions.length;
    const line = Object.fromEntries([['c0', '1893456000000'], ...view.dimensions.map((_, i) => [`c${1 + i}`, 'x'])]);
    const rows = unloadRows(view, `${JSON.stringify({ ...line, [`c${n}`]: '12345678901234567890.123456789' })}\n\n`);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.bucket).toBe(1893456000000);
    expect(Object.values(rows[0]!.values)[0]).toBe('12345678901234567890.123456789');
    expect(() => unloadRows(view, JSON.stringify({ c0: 'soon' }))).toThrow(/bucket/);
  });

  it('accepts the Athena steps and names the bad field', () => {
    const ok = (e: Record<string, unknown>) => BatchTaskEventSchema.safeParse(e).success;
    expect(ok({ step: 'compile', runId: 'r', version: 1, cutoff: 0, database: 'd', table: 't', resultsLocation: 's3://b/athena/' })).toBe(
      true,
    );
    expect(ok({ step: 'verify', runId: 'r', version: 1, cutoff: 0, expected: 's3://b/e.json', output: 's3://b/q.csv' })).toBe(true);
    expect(ok({ step: 'parts', runId: 'r', version: 1, view: 'v', location: 's3://b/u/a0/', queryId: 'q' })).toBe(true);
    expect(ok({ step: 'load', runId: 'r', version: 1, view: 'v', location: 's3://b/u/a0/', group: 'g=7' })).toBe(true);
    expect(ok({ step: 'finish', runId: 'r', version: 1, view: 'v', loads: [{ written: 1, rows: 1, loadMs: 3 }], sqlMs: 2 })).toBe(true);
    const bad = BatchTaskEventSchema.safeParse({ step: 'load', runId: 'r', version: 1, view: 'v', location: 's3://b/u/', group: '../x' });
    expect(bad.error?.issues.map((i) => i.path.join('.'))).toEqual(['group']);
  });

  it('the Athena definition keeps the DuckDB one when no athena option is given', () => {
    const plain = JSON.stringify(batchStateMachineDefinition('arn:f'));
    expect(plain).not.toContain('athena');
    const athena = batchStateMachineDefinition('arn:f', {
      athena: { workgroup: 'w', database: 'd', table: 't', resultsLocation: 's3://b/athena/', pollSeconds: 10, queryTimeoutSeconds: 600 },
    }) as { States: Record<string, Record<string, unknown>> };
    // The budget: 600 s of polls every 10 s.
    expect(JSON.stringify(athena.States.ObjectsBudget)).toContain('"NumericGreaterThanEquals":60');
    expect(athena.States.Skipped).toMatchObject({ Type: 'Choice', Default: 'Compile' });
  });
});

/**
 * Golden tests of the SQL compiler: the exact statements each dialect
 * generates for the demo views (a change is a reviewed diff), a parse check of
 * the athena dialect with a Trino grammar, and quoting/escaping.
 * That the SQL computes the right rows is proved in sql.duckdb.property.test.ts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nodeSqlParser from 'node-sql-parser';
import { describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { toRawRecord } from '../../functions/core/record.ts';
import {
  arrivalPartition,
  athenaSource,
  compileCounted,
  compileView,
  countSql,
  duckdbSource,
  GLUE_COLUMNS,
  GLUE_PARTITION_KEYS,
  glueProjectionParameters,
  outputColumns,
  rawReadRange,
  SqlCompileError,
  type SqlDialect,
} from '../../functions/core/sql.ts';
import { count, distinctFields, max, sum, type View, ViewValidationError, view } from '../../functions/core/views.ts';

const { Parser } = nodeSqlParser;
const parser = new Parser();
/** node-sql-parser's `trino` grammar (Athena engine v3 is Trino); its `athena` grammar rejects NULLS FIRST. */
const TRINO = { database: 'trino' };

const CUTOFF = Date.UTC(2024, 4, 1, 13, 0); // 2024-05-01T13:00Z
/** The default dedup horizon, 7 days. */
const H = 604_800_000;
const ATHENA = athenaSource('tandem', 'raw_events', CUTOFF);
const DUCKDB = duckdbSource(['/stage/a.json.gz', "/stage/it's.json.gz"]);

const demo = (name: string): View => DEMO_VIEWS.find((v) => v.name === name)!;
const compile = (v: View, dialect: SqlDialect, extra: { since?: number } = {}) =>
  compileView(v, { dialect, cutoff: CUTOFF, horizonMs: H, source: dialect === 'athena' ? ATHENA : DUCKDB, ...extra });

/** Expected SQL as an indented block: drops the first and last line breaks of the template. */
const golden = (text: string) => text.replace(/^\n/, '').replace(/\n$/, '');

const ATHENA_COPIES = `WITH copies AS (
  SELECT
    ts, arrival, fields, num,
    LAG(arrival) OVER (PARTITION BY id ORDER BY arrival, shard, seq) AS prev_arrival
  FROM (
    SELECT id, type, ts, arrival, shard, seq, fields, num
    FROM "tandem"."raw_events"
    WHERE dt < '2024-05-01' OR (dt = '2024-05-01' AND hr <= '12')
  )
  WHERE arrival < 1714568400000
),`;

// The `columns` line is one line of the SQL, split here for the line width only.
const DUCKDB_COPIES =
  `WITH copies AS (
  SELECT
    ts, arrival, fields, num,
    LAG(arrival) OVER (PARTITION BY id ORDER BY arrival, shard, seq) AS prev_arrival
  FROM read_json(
    ['/stage/a.json.gz', '/stage/it''s.json.gz'],
    format = 'newline_delimited', compression = 'gzip', hive_partitioning = false,
    columns = {'id': 'VARCHAR', 'type': 'VARCHAR', 'ts': 'BIGINT', 'arrival': 'BIGINT', 'shard': 'VARCHAR', ` +
  `'seq': 'VARCHAR', 'fields': 'MAP(VARCHAR, VARCHAR)', 'num': 'MAP(VARCHAR, VARCHAR)'}
  )
  WHERE arrival < 1714568400000
),`;

describe('compileView golden SQL, demo views', () => {
  it('events_by_type, athena', () => {
    expect(compile(demo('events_by_type'), 'athena')).toBe(
      golden(`
${ATHENA_COPIES}
events AS (
  SELECT
    ts - ts % 60000 AS "k0",
    element_at(fields, 'type') AS "k1"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- type
  COUNT(*) AS "c2" -- events__count
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('events_by_type, duckdb', () => {
    expect(compile(demo('events_by_type'), 'duckdb')).toBe(
      golden(`
${DUCKDB_COPIES}
events AS (
  SELECT
    ts - ts % 60000 AS "k0",
    fields['type'] AS "k1"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- type
  COUNT(*) AS "c2" -- events__count
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('revenue_by_country, athena', () => {
    expect(compile(demo('revenue_by_country'), 'athena')).toBe(
      golden(`
${ATHENA_COPIES}
events AS (
  SELECT
    ts - ts % 3600000 AS "k0",
    element_at(fields, 'country') AS "k1",
    CAST(element_at(num, 'amount') AS DECIMAL(38, 9)) AS "v0"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
    AND element_at(fields, 'type') = 'purchase'
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- country
  COUNT(*) AS "c2", -- orders__count
  COALESCE(SUM("v0"), 0) AS "c3", -- revenue__sum
  MIN("v0") AS "c4", -- min_order__min
  MAX("v0") AS "c5", -- max_order__max
  COALESCE(SUM("v0"), 0) AS "c6", -- avg_order__sum
  COUNT("v0") AS "c7" -- avg_order__count
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('revenue_by_country, duckdb', () => {
    expect(compile(demo('revenue_by_country'), 'duckdb')).toBe(
      golden(`
${DUCKDB_COPIES}
events AS (
  SELECT
    ts - ts % 3600000 AS "k0",
    fields['country'] AS "k1",
    COALESCE(CAST(TRY_CAST(num['amount'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['amount'] AS DECIMAL(38, 9))) AS "v0"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
    AND fields['type'] = 'purchase'
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- country
  COUNT(*) AS "c2", -- orders__count
  COALESCE(SUM("v0"), 0) AS "c3", -- revenue__sum
  MIN("v0") AS "c4", -- min_order__min
  MAX("v0") AS "c5", -- max_order__max
  COALESCE(SUM("v0"), 0) AS "c6", -- avg_order__sum
  COUNT("v0") AS "c7" -- avg_order__count
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('page_views, athena', () => {
    expect(compile(demo('page_views'), 'athena')).toBe(
      golden(`
${ATHENA_COPIES}
events AS (
  SELECT
    ts - ts % 60000 AS "k0",
    element_at(fields, 'page') AS "k1",
    element_at(fields, 'country') AS "k2",
    CAST(element_at(num, 'load_ms') AS DECIMAL(38, 9)) AS "v0",
    lower(to_hex(md5(to_utf8(element_at(fields, 'user'))))) AS "h0"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
    AND element_at(fields, 'type') = 'page_view'
),
aggregates AS (
  SELECT
    "k0" AS "c0", -- bucket
    "k1" AS "c1", -- page
    "k2" AS "c2", -- country
    COUNT(*) AS "c3", -- views__count
    COALESCE(SUM("v0"), 0) AS "c4", -- load_ms__sum
    COUNT("v0") AS "c5" -- load_ms__count
  FROM events
  GROUP BY 1, 2, 3
),
registers0 AS ( -- users__hll: the largest rank per row and register
  SELECT
    "c0", "c1", "c2", reg,
    MAX(4 * (14 - length(tail)) + CASE WHEN tail >= '8' THEN 1 WHEN tail >= '4' THEN 2 WHEN tail >= '2' THEN 3 ELSE 4 END) AS rnk
  FROM (
    SELECT
      "k0" AS "c0", -- bucket
      "k1" AS "c1", -- page
      "k2" AS "c2", -- country
      substr("h0", 1, 3) AS reg,
      regexp_replace(substr("h0", 4, 13) || '8', '^0+', '') AS tail
    FROM events
    WHERE "h0" IS NOT NULL
  )
  GROUP BY 1, 2, 3, 4
),
sketch0 AS ( -- users__hll: the row's registers in index order
  SELECT
    "c0", "c1", "c2",
    array_join(array_agg(reg || lpad(CAST(rnk AS VARCHAR), 2, '0') ORDER BY reg), '') AS regs
  FROM registers0
  GROUP BY 1, 2, 3
)
SELECT
  g."c0" AS "c0", -- bucket
  g."c1" AS "c1", -- page
  g."c2" AS "c2", -- country
  g."c3" AS "c3", -- views__count
  g."c4" AS "c4", -- load_ms__sum
  g."c5" AS "c5", -- load_ms__count
  s0.regs AS "c6" -- users__hll
FROM aggregates g
LEFT JOIN sketch0 s0
  ON s0."c0" = g."c0"
  AND COALESCE(s0."c1", '') = COALESCE(g."c1", '')
  AND (s0."c1" IS NULL) = (g."c1" IS NULL)
  AND COALESCE(s0."c2", '') = COALESCE(g."c2", '')
  AND (s0."c2" IS NULL) = (g."c2" IS NULL)
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
`),
    );
  });

  it('page_views, duckdb', () => {
    expect(compile(demo('page_views'), 'duckdb')).toBe(
      golden(`
${DUCKDB_COPIES}
events AS (
  SELECT
    ts - ts % 60000 AS "k0",
    fields['page'] AS "k1",
    fields['country'] AS "k2",
    COALESCE(CAST(TRY_CAST(num['load_ms'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['load_ms'] AS DECIMAL(38, 9))) AS "v0",
    md5(fields['user']) AS "h0"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
    AND fields['type'] = 'page_view'
),
registers AS ( -- per row and register: the largest rank, and the aggregates of its events
  SELECT
    "k0", "k1", "k2", reg,
    MAX(4 * (14 - length(tail)) + CASE WHEN tail >= '8' THEN 1 WHEN tail >= '4' THEN 2 WHEN tail >= '2' THEN 3 ELSE 4 END) AS rnk,
    COUNT(*) AS "p0", -- views__count
    COALESCE(SUM("v0"), 0) AS "p1", -- load_ms__sum
    COUNT("v0") AS "p2" -- load_ms__count
  FROM (
    SELECT
      *, substr("h0", 1, 3) AS reg,
      regexp_replace(substr("h0", 4, 13) || '8', '^0+', '') AS tail
    FROM events
  )
  GROUP BY 1, 2, 3, 4
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- page
  "k2" AS "c2", -- country
  SUM("p0") AS "c3", -- views__count
  SUM("p1") AS "c4", -- load_ms__sum
  SUM("p2") AS "c5", -- load_ms__count
  NULLIF(array_to_string(list_sort(list(reg || lpad(CAST(rnk AS VARCHAR), 2, '0'))), ''), '') AS "c6" -- users__hll
FROM registers
GROUP BY 1, 2, 3
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
`),
    );
  });

  it('the two dialects differ only in map access, the decimal cast, md5 and the concatenating aggregate', () => {
    // Not a view counting one field's distinct values: DuckDB computes it in one pass (page_views, above).
    for (const v of DEMO_VIEWS.filter((x) => distinctFields(x).length !== 1)) {
      const athena = compileView(v, { dialect: 'athena', cutoff: CUTOFF, horizonMs: H, since: CUTOFF - 3_600_000, source: 'SRC' });
      const duckdb = compileView(v, { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: H, since: CUTOFF - 3_600_000, source: 'SRC' });
      expect(
        athena
          .replace(/element_at\((fields|num), ('[^']*')\)/g, '$1[$2]')
          .replace(
            /CAST\((num\['[^']*'\]) AS DECIMAL\(38, 9\)\)/g,
            'COALESCE(CAST(TRY_CAST($1 AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST($1 AS DECIMAL(38, 9)))',
          )
          .replace(/lower\(to_hex\(md5\(to_utf8\((fields\['[^']*'\])\)\)\)\)/g, 'md5($1)')
          .replace(/array_join\(array_agg\((.*) ORDER BY reg\), ''\)/g, "array_to_string(list_sort(list($1)), '')"),
      ).toBe(duckdb);
    }
  });

  it('a day view without dimensions, with since: the counted copies arrived in [since, cutoff), read from since - H', () => {
    const v = view({ name: 'daily', grain: 'day', dimensions: [], metrics: { n: count(), top: max('amount') } });
    // since = 12:00, H = 10 minutes: reads arrivals from 11:50.
    const options = { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: 600_000, since: CUTOFF - 3_600_000, source: 'raw' } as const;
    expect(compileView(v, options)).toBe(
      golden(`
WITH copies AS (
  SELECT
    ts, arrival, fields, num,
    LAG(arrival) OVER (PARTITION BY id ORDER BY arrival, shard, seq) AS prev_arrival
  FROM raw
  WHERE arrival < 1714568400000 AND arrival >= 1714564200000
),
events AS (
  SELECT
    ts - ts % 86400000 AS "k0",
    COALESCE(CAST(TRY_CAST(num['amount'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['amount'] AS DECIMAL(38, 9))) AS "v0"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 600000) AND arrival >= 1714564800000
)
SELECT
  "k0" AS "c0", -- bucket
  COUNT(*) AS "c1", -- n__count
  MAX("v0") AS "c2" -- top__max
FROM events
GROUP BY 1
ORDER BY 1
`),
    );
  });

  it('counted: the copies that count selected once (compileCounted), then a view aggregates them as they are', () => {
    const v = view({ name: 'daily', grain: 'day', dimensions: [], metrics: { n: count(), top: max('amount') } });
    const options = { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: 600_000, since: CUTOFF - 3_600_000, source: 'raw' } as const;
    expect(compileCounted(options)).toBe(
      golden(`
WITH repeated AS (
  SELECT id FROM raw
  WHERE arrival < 1714568400000 AND arrival >= 1714564200000
  GROUP BY id
  HAVING COUNT(*) > 1
),
copies AS (
  SELECT
    ts, arrival, fields, num,
    LAG(arrival) OVER (PARTITION BY s.id ORDER BY arrival, shard, seq) AS prev_arrival
  FROM raw s
  SEMI JOIN repeated r ON s.id IS NOT DISTINCT FROM r.id
  WHERE arrival < 1714568400000 AND arrival >= 1714564200000
)
SELECT ts, fields, num
FROM raw s
ANTI JOIN repeated r ON s.id IS NOT DISTINCT FROM r.id
WHERE arrival < 1714568400000 AND arrival >= 1714564200000 AND arrival >= 1714564800000
UNION ALL
SELECT ts, fields, num
FROM copies
WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 600000) AND arrival >= 1714564800000
`),
    );
    expect(compileView(v, { ...options, source: 'counted_0', counted: true })).toBe(
      golden(`
WITH events AS (
  SELECT
    ts - ts % 86400000 AS "k0",
    COALESCE(CAST(TRY_CAST(num['amount'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['amount'] AS DECIMAL(38, 9))) AS "v0"
  FROM counted_0
)
SELECT
  "k0" AS "c0", -- bucket
  COUNT(*) AS "c1", -- n__count
  MAX("v0") AS "c2" -- top__max
FROM events
GROUP BY 1
ORDER BY 1
`),
    );
    expect(() => compileCounted({ ...options, cutoff: 1.5 })).toThrow(/cutoff/);
    expect(() => compileCounted({ ...options, dialect: 'athena' })).toThrow(/DuckDB SQL, received dialect athena/);
  });

  it('outputColumns lists bucket, dimensions, then state columns', () => {
    expect(outputColumns(demo('revenue_by_country'))).toEqual([
      'bucket',
      'country',
      'orders__count',
      'revenue__sum',
      'min_order__min',
      'max_order__max',
      'avg_order__sum',
      'avg_order__count',
    ]);
  });

  it('names that differ only in case get their own positional columns (Trino folds even quoted identifiers)', () => {
    const v = view({
      name: 'cased',
      grain: 'hour',
      dimensions: ['country', 'Country'],
      metrics: { total: sum('amount'), Total: sum('Amount'), n: count() },
    });
    expect(compile(v, 'athena')).toBe(
      golden(`
${ATHENA_COPIES}
events AS (
  SELECT
    ts - ts % 3600000 AS "k0",
    element_at(fields, 'country') AS "k1",
    element_at(fields, 'Country') AS "k2",
    CAST(element_at(num, 'amount') AS DECIMAL(38, 9)) AS "v0",
    CAST(element_at(num, 'Amount') AS DECIMAL(38, 9)) AS "v1"
  FROM copies
  WHERE (prev_arrival IS NULL OR arrival - prev_arrival > 604800000)
)
SELECT
  "k0" AS "c0", -- bucket
  "k1" AS "c1", -- country
  "k2" AS "c2", -- Country
  COALESCE(SUM("v0"), 0) AS "c3", -- total__sum
  COALESCE(SUM("v1"), 0) AS "c4", -- Total__sum
  COUNT(*) AS "c5" -- n__count
FROM events
GROUP BY 1, 2, 3
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
`),
    );
    expect(outputColumns(v)).toEqual(['bucket', 'country', 'Country', 'total__sum', 'Total__sum', 'n__count']);
  });
});

describe('docs/views.md', () => {
  it.each([
    ['revenue_by_country', '### `revenue_by_country`, as generated', '### `page_views`, with'],
    ['page_views (distinct)', '### `page_views`, with', '## How the SQL is tested'],
  ])('shows the SQL compileView generates for %s', (name, start, end) => {
    const doc = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../docs/views.md'), 'utf8');
    const section = doc.slice(doc.indexOf(start), doc.indexOf(end));
    const blocks = [...section.matchAll(/```sql\n([\s\S]*?)\n```/g)].map((m) => m[1]);
    const v = demo(name.split(' ')[0]!);
    const since = CUTOFF - 3_600_000;
    const from = rawReadRange(CUTOFF, H, since).from;
    const files = [
      '/data/stage/raw/dt=2024-05-01/hr=12/shardId-000000000000/0001-0042.json.gz',
      '/data/stage/raw/dt=2024-05-01/hr=12/shardId-000000000001/0001-0017.json.gz',
    ];
    expect(blocks).toEqual([
      compileView(v, {
        dialect: 'athena',
        cutoff: CUTOFF,
        horizonMs: H,
        since,
        source: athenaSource('tandem', 'raw_events', CUTOFF, from),
      }),
      compileView(v, { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: H, source: duckdbSource(files) }),
    ]);
  });
});

describe('rawReadRange', () => {
  it('a rebuild reads all history before the cutoff; an increment from since - H', () => {
    expect(rawReadRange(CUTOFF, H)).toEqual({ from: null, to: CUTOFF });
    expect(rawReadRange(CUTOFF, H, CUTOFF - 3_600_000)).toEqual({ from: CUTOFF - 3_600_000 - H, to: CUTOFF });
    expect(rawReadRange(CUTOFF, H, CUTOFF)).toEqual({ from: CUTOFF - H, to: CUTOFF });
    expect(rawReadRange(CUTOFF, 0, CUTOFF - 1)).toEqual({ from: CUTOFF - 1, to: CUTOFF });
    // Never before the epoch.
    expect(rawReadRange(1_000, H, 500)).toEqual({ from: 0, to: 1_000 });
  });

  it('rejects what compileView rejects', () => {
    expect(() => rawReadRange(CUTOFF, -1)).toThrow(/horizonMs must be whole/);
    expect(() => rawReadRange(CUTOFF, 1.5)).toThrow(/horizonMs/);
    expect(() => rawReadRange(CUTOFF, H, CUTOFF + 1)).toThrow(/since .* must not be after the cutoff/);
  });

  it('compileView reads exactly rawReadRange', () => {
    const v = demo('events_by_type');
    for (const since of [undefined, CUTOFF - 86_400_000, CUTOFF]) {
      const { from } = rawReadRange(CUTOFF, H, since);
      const sql = compileView(v, {
        dialect: 'duckdb',
        cutoff: CUTOFF,
        horizonMs: H,
        source: 'raw',
        ...(since === undefined ? {} : { since }),
      });
      expect(sql).toContain(from === null ? `WHERE arrival < ${CUTOFF}\n` : `WHERE arrival < ${CUTOFF} AND arrival >= ${from}\n`);
    }
  });
});

describe('sources and counts', () => {
  it('countSql counts records and distinct ids before the cutoff', () => {
    expect(countSql('athena', 'raw', CUTOFF)).toBe(
      golden(`
SELECT COUNT(*) AS "records", COUNT(DISTINCT id) AS "ids"
FROM raw
WHERE arrival < 1714568400000
`),
    );
  });

  it('duckdbSource of no files is an empty relation with the archive columns', () => {
    expect(duckdbSource([])).toBe(
      '(SELECT CAST(NULL AS VARCHAR) AS id, CAST(NULL AS VARCHAR) AS type, CAST(NULL AS BIGINT) AS ts, CAST(NULL AS BIGINT) AS arrival, ' +
        'CAST(NULL AS VARCHAR) AS shard, CAST(NULL AS VARCHAR) AS seq, CAST(NULL AS MAP(VARCHAR, VARCHAR)) AS fields, ' +
        'CAST(NULL AS MAP(VARCHAR, VARCHAR)) AS num WHERE false)',
    );
  });

  it('duckdbSource rejects paths DuckDB would read as globs', () => {
    expect(() => duckdbSource(['/stage/*.json.gz'])).toThrow(/glob characters/);
    expect(() => duckdbSource(['/stage/a[1].json.gz'])).toThrow(/glob characters/);
  });

  it('athenaSource keeps the partitions up to the hour of cutoff - 1 ms', () => {
    expect(arrivalPartition(Date.UTC(2024, 4, 1, 0, 0) - 1)).toEqual({ dt: '2024-04-30', hr: '23' });
    expect(athenaSource('db', 'raw', Date.UTC(2024, 4, 1, 0, 0))).toContain(
      `WHERE dt < '2024-04-30' OR (dt = '2024-04-30' AND hr <= '23')`,
    );
    expect(athenaSource('db', 'raw', Date.UTC(2024, 4, 1, 0, 1))).toContain(
      `WHERE dt < '2024-05-01' OR (dt = '2024-05-01' AND hr <= '00')`,
    );
  });

  it('athenaSource with a lower bound keeps the partitions from the hour holding it', () => {
    const { from } = rawReadRange(CUTOFF, H, CUTOFF - 3_600_000); // 2024-04-24T12:00Z
    expect(athenaSource('tandem', 'raw_events', CUTOFF, from)).toBe(
      [
        '(',
        '    SELECT id, type, ts, arrival, shard, seq, fields, num',
        '    FROM "tandem"."raw_events"',
        `    WHERE (dt > '2024-04-24' OR (dt = '2024-04-24' AND hr >= '12')) AND (dt < '2024-05-01' OR (dt = '2024-05-01' AND hr <= '12'))`,
        '  )',
      ].join('\n'),
    );
    expect(athenaSource('db', 'raw', CUTOFF, Date.UTC(2024, 3, 30, 23, 59, 59, 999))).toContain(
      `(dt > '2024-04-30' OR (dt = '2024-04-30' AND hr >= '23'))`,
    );
    expect(athenaSource('db', 'raw', CUTOFF, null)).toBe(athenaSource('db', 'raw', CUTOFF));
    expect(() => athenaSource('db', 'raw', CUTOFF, -5)).toThrow(/from must be whole/);
  });

  it('the Glue columns are the fields of a RawRecord, partitioned by dt and hr', () => {
    const r = toRawRecord({ id: 'a', type: 't', ts: 1714568400000, amount: 1.5 }, 1714568400001, 'shardId-000000000000', '1');
    expect(GLUE_COLUMNS.map((c) => c.name)).toEqual(Object.keys(r));
    expect(GLUE_COLUMNS.find((c) => c.name === 'fields')?.type).toBe('map<string,string>');
    expect(GLUE_PARTITION_KEYS.map((c) => c.name)).toEqual(['dt', 'hr']);
  });

  it('partition projection parameters match the archive key layout', () => {
    const p = glueProjectionParameters('s3://bucket/raw/', '2024-05-01');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Athena's projection template syntax, not a JS template
    expect(p['storage.location.template']).toBe('s3://bucket/raw/dt=${dt}/hr=${hr}/');
    expect(p['projection.dt.range']).toBe('2024-05-01,NOW');
    expect(p['projection.hr.digits']).toBe('2');
    expect(() => glueProjectionParameters('s3://bucket/raw/', '01/05/2024')).toThrow(/firstDay must be YYYY-MM-DD/);
  });

  it('rejects bad Glue names, cutoffs and since', () => {
    expect(() => athenaSource('db"; DROP', 'raw', CUTOFF)).toThrow(SqlCompileError);
    expect(() => athenaSource('db', 'Raw', CUTOFF)).toThrow(/lowercase/);
    const v = demo('events_by_type');
    const base = { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: H, source: 'raw' } as const;
    expect(() => compileView(v, { ...base, cutoff: 1.5 })).toThrow(/cutoff must be whole epoch milliseconds/);
    expect(() => compileView(v, { ...base, cutoff: -1 })).toThrow(/cutoff/);
    expect(() => compileView(v, { ...base, since: CUTOFF + 1 })).toThrow(/since .* must not be after the cutoff/);
    expect(() => compileView(v, { ...base, horizonMs: -1 })).toThrow(/horizonMs must be whole/);
    expect(() => compileView(v, { ...base, horizonMs: Number.NaN })).toThrow(/horizonMs/);
    expect(() => compileView(v, { ...base, horizonMs: undefined as unknown as number })).toThrow(/horizonMs/);
    expect(() => compileView(v, { ...base, dialect: 'mysql' as SqlDialect })).toThrow(/dialect must be one of athena, duckdb/);
  });
});

/** Every node of a parsed statement whose type names a string literal. */
function stringLiterals(node: unknown, out: string[] = []): string[] {
  if (node !== null && typeof node === 'object') {
    const n = node as { type?: unknown; value?: unknown };
    if (n.type === 'single_quote_string') out.push(String(n.value));
    for (const child of Object.values(node)) stringLiterals(child, out);
  }
  return out;
}

describe('athena dialect parses as Trino SQL (node-sql-parser)', () => {
  const parse = (sql: string) => {
    const { ast, tableList } = parser.parse(sql, TRINO);
    const statements = Array.isArray(ast) ? ast : [ast];
    expect(statements).toHaveLength(1);
    return { ast: statements[0] as unknown as { type: string; columns: { as: string | null }[]; with: unknown[] }, tableList };
  };

  it.each(DEMO_VIEWS.map((v) => [v.name, v] as const))('%s: one SELECT over the Glue table, with the output columns in order', (_, v) => {
    const { ast, tableList } = parse(compile(v, 'athena'));
    expect(ast.type).toBe('select');
    // copies, events; with distinct metrics also aggregates and, per metric, registers<k> and sketch<k>.
    const sketches = Object.values(v.metrics).filter((m) => m.fn === 'distinct').length;
    expect(ast.with).toHaveLength(sketches === 0 ? 2 : 3 + 2 * sketches);
    expect(ast.columns.map((c) => c.as)).toEqual(outputColumns(v).map((_, i) => `c${i}`));
    expect(tableList.filter((t) => !/::(copies|events|aggregates|registers\d+|sketch\d+)$/.test(t))).toEqual([
      'select::tandem::raw_events',
    ]);
  });

  it('an increment over the partitions from since - H parses; names differing only in case get distinct columns', () => {
    const v = view({
      name: 'cased',
      grain: 'hour',
      dimensions: ['country', 'Country'],
      metrics: { total: sum('amount'), Total: sum('Amount'), n: count() },
    });
    const since = CUTOFF - 3_600_000;
    const source = athenaSource('tandem', 'raw_events', CUTOFF, rawReadRange(CUTOFF, H, since).from);
    const { ast, tableList } = parse(compileView(v, { dialect: 'athena', cutoff: CUTOFF, horizonMs: H, since, source }));
    const aliases = ast.columns.map((c) => c.as);
    expect(aliases).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5']);
    expect(new Set(aliases.map((a) => a?.toLowerCase())).size).toBe(aliases.length);
    expect(tableList.filter((t) => !/::(copies|events)$/.test(t))).toEqual(['select::tandem::raw_events']);
  });

  it('countSql parses', () => {
    const { ast } = parse(countSql('athena', ATHENA, CUTOFF));
    expect(ast.columns.map((c) => c.as)).toEqual(['records', 'ids']);
  });

  it('an injection attempt in a filter value stays one string literal', () => {
    const v = view({
      name: 'tricky',
      filter: { country: "O'Hare'); DROP TABLE raw_events; --", flag: true, code: 7 },
      dimensions: ['order'],
      grain: 'day',
      metrics: { select: count(), from: sum('amount') },
    });
    const sql = compile(v, 'athena', { since: CUTOFF - 86_400_000 });
    expect(sql).toContain(`element_at(fields, 'country') = 'O''Hare''); DROP TABLE raw_events; --'`);
    expect(sql).toContain(`element_at(fields, 'flag') = 'true'`);
    expect(sql).toContain(`element_at(fields, 'code') = '7'`);
    // The key is computed once, in `events`, and named by position ("k1"), never after the view.
    expect(sql).toContain(`element_at(fields, 'order') AS "k1",`);
    expect(sql).toContain(`"k1" AS "c1", -- order`);
    const { ast } = parse(sql);
    expect(ast.columns.map((c) => c.as)).toEqual(['c0', 'c1', 'c2', 'c3']);
    // The parser keeps the doubled quote as written: one literal, not a statement break.
    expect(stringLiterals(ast)).toEqual([
      '2024-05-01',
      '2024-05-01',
      '12',
      'order',
      'amount',
      'country',
      "O''Hare''); DROP TABLE raw_events; --",
      'flag',
      'true',
      'code',
      '7',
    ]);
  });
});

describe('names and literals', () => {
  it('the view schema rejects names that would need escaping, naming the path', () => {
    const bad = [`country'`, 'a"b', 'x; DROP TABLE t', "fields['x']", 'a b', '1abc', ''];
    for (const name of bad) {
      expect(() => view({ name: 'v', grain: 'hour', dimensions: [name], metrics: { n: count() } })).toThrow(ViewValidationError);
      expect(() => view({ name: 'v', grain: 'hour', dimensions: [], metrics: { n: sum(name) } })).toThrow(/view\.metrics\.n\.field/);
      expect(() => view({ name: 'v', grain: 'hour', dimensions: [], metrics: { [name]: count() } })).toThrow(ViewValidationError);
      expect(() => view({ name: 'v', grain: 'hour', dimensions: [], filter: { [name]: 'x' }, metrics: { n: count() } })).toThrow(
        ViewValidationError,
      );
    }
  });

  it('the compiler checks names again on a view built without the schema', () => {
    const raw = (patch: Partial<View>): View => ({ name: 'v', grain: 'hour', dimensions: [], metrics: { n: { fn: 'count' } }, ...patch });
    const compileRaw = (v: View) => compileView(v, { dialect: 'athena', cutoff: CUTOFF, horizonMs: H, source: 'raw' });
    expect(() => compileRaw(raw({ dimensions: [`x') AS "y", (SELECT 1`] }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ metrics: { n: { fn: 'sum', field: "amount')) --" } } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ metrics: { 'n" FROM x --': { fn: 'count' } } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ filter: { "type') OR ('1'='1": 'x' } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ grain: 'week' as View['grain'] }))).toThrow(/unknown grain/);
  });

  it('quotes and escapes filter values; rejects NUL', () => {
    const v = (value: string) => view({ name: 'v', grain: 'hour', dimensions: [], filter: { country: value }, metrics: { n: count() } });
    const sql = (value: string) => compileView(v(value), { dialect: 'duckdb', cutoff: CUTOFF, horizonMs: H, source: 'raw' });
    expect(sql(`it's "quoted" \\ back`)).toContain(`AND fields['country'] = 'it''s "quoted" \\ back'\n`);
    expect(sql("''")).toContain(`= ''''''`);
    expect(sql('multi\nline')).toContain(`= 'multi\nline'`);
    expect(() => sql('nul\u0000here')).toThrow(/NUL/);
  });

  it('names from the view never become SQL identifiers: only map keys (literals) and comments', () => {
    const long = `m${'x'.repeat(63)}`;
    const v = view({ name: 'v', grain: 'hour', dimensions: ['order'], metrics: { [long]: count(), select: sum('from') } });
    const sql = compileView(v, { dialect: 'athena', cutoff: CUTOFF, horizonMs: H, source: 'raw' });
    expect(sql).toContain(`COUNT(*) AS "c2", -- ${long}__count`);
    expect(sql).toContain(`element_at(fields, 'order') AS "k1",`);
    expect(sql).toContain(`"k1" AS "c1", -- order`);
    expect(sql.match(/"[^"]*"/g)).toEqual(['"k0"', '"k1"', '"v0"', '"k0"', '"c0"', '"k1"', '"c1"', '"c2"', '"v0"', '"c3"']);
  });
});

/**
 * Golden tests of the SQL compiler: the exact statements each dialect
 * generates for the demo views (a change is a reviewed diff), a parse check of
 * the athena dialect with a Trino grammar, and quoting/escaping.
 * That the SQL computes the right rows is proved in sql.duckdb.property.test.ts.
 */
import nodeSqlParser from 'node-sql-parser';
import { describe, expect, it } from 'vitest';
import { DEMO_VIEWS } from '../../functions/core/demo-views.ts';
import { toRawRecord } from '../../functions/core/record.ts';
import {
  arrivalPartition,
  athenaSource,
  compileView,
  countSql,
  duckdbSource,
  GLUE_COLUMNS,
  GLUE_PARTITION_KEYS,
  glueProjectionParameters,
  outputColumns,
  SqlCompileError,
  type SqlDialect,
} from '../../functions/core/sql.ts';
import { count, max, sum, type View, ViewValidationError, view } from '../../functions/core/views.ts';

const { Parser } = nodeSqlParser;
const parser = new Parser();
/** node-sql-parser's `trino` grammar (Athena engine v3 is Trino); its `athena` grammar rejects NULLS FIRST. */
const TRINO = { database: 'trino' };

const CUTOFF = Date.UTC(2024, 4, 1, 13, 0); // 2024-05-01T13:00Z
const ATHENA = athenaSource('tandem', 'raw_events', CUTOFF);
const DUCKDB = duckdbSource(['/stage/a.json.gz', "/stage/it's.json.gz"]);

const demo = (name: string): View => DEMO_VIEWS.find((v) => v.name === name)!;
const compile = (v: View, dialect: SqlDialect, extra: { since?: number } = {}) =>
  compileView(v, { dialect, cutoff: CUTOFF, source: dialect === 'athena' ? ATHENA : DUCKDB, ...extra });

/** Expected SQL as an indented block: drops the first and last line breaks of the template. */
const golden = (text: string) => text.replace(/^\n/, '').replace(/\n$/, '');

const ATHENA_RANKED = `WITH ranked AS (
  SELECT
    ts, arrival, fields, num,
    ROW_NUMBER() OVER (PARTITION BY id ORDER BY arrival, seq) AS copy_rank
  FROM (
    SELECT id, type, ts, arrival, shard, seq, fields, num
    FROM "tandem"."raw_events"
    WHERE dt < '2024-05-01' OR (dt = '2024-05-01' AND hr <= '12')
  )
  WHERE arrival < 1714568400000
),`;

// The `columns` line is one line of the SQL, split here for the line width only.
const DUCKDB_RANKED =
  `WITH ranked AS (
  SELECT
    ts, arrival, fields, num,
    ROW_NUMBER() OVER (PARTITION BY id ORDER BY arrival, seq) AS copy_rank
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
${ATHENA_RANKED}
events AS (
  SELECT
    ts, fields
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 60000 AS "bucket",
  element_at(fields, 'type') AS "type",
  COUNT(*) AS "events__count"
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('events_by_type, duckdb', () => {
    expect(compile(demo('events_by_type'), 'duckdb')).toBe(
      golden(`
${DUCKDB_RANKED}
events AS (
  SELECT
    ts, fields
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 60000 AS "bucket",
  fields['type'] AS "type",
  COUNT(*) AS "events__count"
FROM events
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('revenue_by_country, athena', () => {
    expect(compile(demo('revenue_by_country'), 'athena')).toBe(
      golden(`
${ATHENA_RANKED}
events AS (
  SELECT
    ts, fields,
    CAST(element_at(num, 'amount') AS DECIMAL(38, 9)) AS "num_amount"
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 3600000 AS "bucket",
  element_at(fields, 'country') AS "country",
  COUNT(*) AS "orders__count",
  COALESCE(SUM("num_amount"), 0) AS "revenue__sum",
  MIN("num_amount") AS "min_order__min",
  MAX("num_amount") AS "max_order__max",
  COALESCE(SUM("num_amount"), 0) AS "avg_order__sum",
  COUNT("num_amount") AS "avg_order__count"
FROM events
WHERE element_at(fields, 'type') = 'purchase'
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('revenue_by_country, duckdb', () => {
    expect(compile(demo('revenue_by_country'), 'duckdb')).toBe(
      golden(`
${DUCKDB_RANKED}
events AS (
  SELECT
    ts, fields,
    COALESCE(CAST(TRY_CAST(num['amount'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['amount'] AS DECIMAL(38, 9))) AS "num_amount"
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 3600000 AS "bucket",
  fields['country'] AS "country",
  COUNT(*) AS "orders__count",
  COALESCE(SUM("num_amount"), 0) AS "revenue__sum",
  MIN("num_amount") AS "min_order__min",
  MAX("num_amount") AS "max_order__max",
  COALESCE(SUM("num_amount"), 0) AS "avg_order__sum",
  COUNT("num_amount") AS "avg_order__count"
FROM events
WHERE fields['type'] = 'purchase'
GROUP BY 1, 2
ORDER BY 1, 2 NULLS FIRST
`),
    );
  });

  it('page_views, athena', () => {
    expect(compile(demo('page_views'), 'athena')).toBe(
      golden(`
${ATHENA_RANKED}
events AS (
  SELECT
    ts, fields,
    CAST(element_at(num, 'load_ms') AS DECIMAL(38, 9)) AS "num_load_ms"
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 60000 AS "bucket",
  element_at(fields, 'page') AS "page",
  element_at(fields, 'country') AS "country",
  COUNT(*) AS "views__count",
  COALESCE(SUM("num_load_ms"), 0) AS "load_ms__sum",
  COUNT("num_load_ms") AS "load_ms__count"
FROM events
WHERE element_at(fields, 'type') = 'page_view'
GROUP BY 1, 2, 3
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
`),
    );
  });

  it('page_views, duckdb', () => {
    expect(compile(demo('page_views'), 'duckdb')).toBe(
      golden(`
${DUCKDB_RANKED}
events AS (
  SELECT
    ts, fields,
    COALESCE(CAST(TRY_CAST(num['load_ms'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['load_ms'] AS DECIMAL(38, 9))) AS "num_load_ms"
  FROM ranked
  WHERE copy_rank = 1
)
SELECT
  ts - ts % 60000 AS "bucket",
  fields['page'] AS "page",
  fields['country'] AS "country",
  COUNT(*) AS "views__count",
  COALESCE(SUM("num_load_ms"), 0) AS "load_ms__sum",
  COUNT("num_load_ms") AS "load_ms__count"
FROM events
WHERE fields['type'] = 'page_view'
GROUP BY 1, 2, 3
ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST
`),
    );
  });

  it('the two dialects differ only in map access and the decimal cast', () => {
    for (const v of DEMO_VIEWS) {
      const athena = compileView(v, { dialect: 'athena', cutoff: CUTOFF, source: 'SRC' });
      const duckdb = compileView(v, { dialect: 'duckdb', cutoff: CUTOFF, source: 'SRC' });
      expect(
        athena
          .replace(/element_at\((fields|num), ('[^']*')\)/g, '$1[$2]')
          .replace(
            /CAST\((num\['[^']*'\]) AS DECIMAL\(38, 9\)\)/g,
            'COALESCE(CAST(TRY_CAST($1 AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST($1 AS DECIMAL(38, 9)))',
          ),
      ).toBe(duckdb);
    }
  });

  it('a day view without dimensions, with since: the first copies arrived in [since, cutoff)', () => {
    const v = view({ name: 'daily', grain: 'day', dimensions: [], metrics: { n: count(), top: max('amount') } });
    expect(compileView(v, { dialect: 'duckdb', cutoff: CUTOFF, since: CUTOFF - 3_600_000, source: 'raw' })).toBe(
      golden(`
WITH ranked AS (
  SELECT
    ts, arrival, fields, num,
    ROW_NUMBER() OVER (PARTITION BY id ORDER BY arrival, seq) AS copy_rank
  FROM raw
  WHERE arrival < 1714568400000
),
events AS (
  SELECT
    ts, fields,
    COALESCE(CAST(TRY_CAST(num['amount'] AS DECIMAL(18, 9)) AS DECIMAL(38, 9)), CAST(num['amount'] AS DECIMAL(38, 9))) AS "num_amount"
  FROM ranked
  WHERE copy_rank = 1 AND arrival >= 1714564800000
)
SELECT
  ts - ts % 86400000 AS "bucket",
  COUNT(*) AS "n__count",
  MAX("num_amount") AS "top__max"
FROM events
GROUP BY 1
ORDER BY 1
`),
    );
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
    expect(() => compileView(v, { dialect: 'duckdb', cutoff: 1.5, source: 'raw' })).toThrow(/cutoff must be whole epoch milliseconds/);
    expect(() => compileView(v, { dialect: 'duckdb', cutoff: -1, source: 'raw' })).toThrow(/cutoff/);
    expect(() => compileView(v, { dialect: 'duckdb', cutoff: CUTOFF, since: CUTOFF + 1, source: 'raw' })).toThrow(
      /since .* must not be after the cutoff/,
    );
    expect(() => compileView(v, { dialect: 'mysql' as SqlDialect, cutoff: CUTOFF, source: 'raw' })).toThrow(
      /dialect must be one of athena, duckdb/,
    );
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
    expect(ast.with).toHaveLength(2);
    expect(ast.columns.map((c) => c.as)).toEqual(outputColumns(v));
    expect(tableList.filter((t) => !/::(ranked|events)$/.test(t))).toEqual(['select::tandem::raw_events']);
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
    expect(sql).toContain(`element_at(fields, 'order') AS "order"`);
    const { ast } = parse(sql);
    expect(ast.columns.map((c) => c.as)).toEqual(['bucket', 'order', 'select__count', 'from__sum']);
    // The parser keeps the doubled quote as written: one literal, not a statement break.
    expect(stringLiterals(ast)).toEqual([
      '2024-05-01',
      '2024-05-01',
      '12',
      'amount',
      'order',
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
    const compileRaw = (v: View) => compileView(v, { dialect: 'athena', cutoff: CUTOFF, source: 'raw' });
    expect(() => compileRaw(raw({ dimensions: [`x') AS "y", (SELECT 1`] }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ metrics: { n: { fn: 'sum', field: "amount')) --" } } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ metrics: { 'n" FROM x --': { fn: 'count' } } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ filter: { "type') OR ('1'='1": 'x' } }))).toThrow(SqlCompileError);
    expect(() => compileRaw(raw({ grain: 'week' as View['grain'] }))).toThrow(/unknown grain/);
  });

  it('quotes and escapes filter values; rejects NUL', () => {
    const v = (value: string) => view({ name: 'v', grain: 'hour', dimensions: [], filter: { country: value }, metrics: { n: count() } });
    const sql = (value: string) => compileView(v(value), { dialect: 'duckdb', cutoff: CUTOFF, source: 'raw' });
    expect(sql(`it's "quoted" \\ back`)).toContain(`WHERE fields['country'] = 'it''s "quoted" \\ back'`);
    expect(sql("''")).toContain(`= ''''''`);
    expect(sql('multi\nline')).toContain(`= 'multi\nline'`);
    expect(() => sql('nul\u0000here')).toThrow(/NUL/);
  });

  it('derived column names may exceed 64 characters', () => {
    const long = `m${'x'.repeat(63)}`;
    const v = view({ name: 'v', grain: 'hour', dimensions: [], metrics: { [long]: count() } });
    expect(compileView(v, { dialect: 'athena', cutoff: CUTOFF, source: 'raw' })).toContain(`COUNT(*) AS "${long}__count"`);
  });
});

/**
 * The SQL compiler: one view -> one readable SQL statement over the raw archive
 * (RawRecord lines, see record.ts), for Athena (Trino) in AWS and DuckDB locally.
 *
 * Both dialects are generated from the same description of the view; the few
 * places where the engines differ live in DIALECTS below. Everything spliced
 * into the SQL is an archive column (fixed names, none a reserved word in
 * Trino or DuckDB, written bare), a name from the view (checked against NAME_RE
 * again here, then double-quoted, as it may be a reserved word such as
 * `order`), a whole number (cutoffs, grains) or a literal quoted and escaped by
 * `literal`. Nothing comes from event data.
 *
 * Output columns, in this order (see `outputColumns`): `bucket` (BIGINT epoch ms),
 * each dimension by name (text, NULL when absent), then the state columns of
 * metrics.ts `stateColumns(view)`: counts BIGINT, sums/min/max DECIMAL(38, 9).
 * Athena lowercases result column names, so readers should map columns by
 * position (`outputColumns`), and read decimals as text, never as doubles.
 */
import { PRECISION, SCALE } from './decimal.ts';
import type { Component } from './metrics.ts';
import { stateColumns } from './metrics.ts';
import { GRAIN_MS, iso } from './time.ts';
import { canonicalValue, metricFields, NAME_RE, type View } from './views.ts';

export type SqlDialect = 'athena' | 'duckdb';
export const SQL_DIALECTS: readonly SqlDialect[] = ['athena', 'duckdb'];

export class SqlCompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SqlCompileError';
  }
}

/**
 * What differs between the engines. Everything else in the statements is SQL
 * both read the same way: double-quoted identifiers, '' in literals,
 * CAST(x AS DECIMAL(38, 9)), % on BIGINT, ROW_NUMBER() OVER, ordinals in GROUP BY
 * and ORDER BY, NULLS FIRST.
 */
/** The exact type of every metric value in SQL (DECIMAL(38, 9), as decimal.ts). */
const DECIMAL_TYPE = `DECIMAL(${PRECISION}, ${SCALE})`;

interface Dialect {
  /** Text of a map entry, NULL when the key is absent. */
  readonly mapGet: (map: string, key: string) => string;
  /** Exact DECIMAL(38, 9) of a decimal text. */
  readonly toDecimal: (text: string) => string;
}

const DIALECTS: Record<SqlDialect, Dialect> = {
  // Trino's map[key] fails the query on a missing key; element_at returns NULL.
  athena: { mapGet: (map, key) => `element_at(${map}, ${key})`, toDecimal: (x) => `CAST(${x} AS ${DECIMAL_TYPE})` },
  // DuckDB's element_at returns a list; map[key] returns the value or NULL.
  // Its text -> DECIMAL(38, 9) cast is ~30x slower than to DECIMAL(18, 9) (measured by
  // bench/batch.ts): inputs have <= 15 significant digits, so nearly all fit the narrow type
  // exactly; the wide cast is only the fallback. Both are exact, never a DOUBLE.
  duckdb: {
    mapGet: (map, key) => `${map}[${key}]`,
    toDecimal: (x) => `COALESCE(CAST(TRY_CAST(${x} AS DECIMAL(18, ${SCALE})) AS ${DECIMAL_TYPE}), CAST(${x} AS ${DECIMAL_TYPE}))`,
  },
};

/** Names the compiler derives (`<metric>__<component>`, `num_<field>`) may pass NAME_RE's length, never its alphabet. */
const DERIVED_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A double-quoted identifier. Only letters, digits and _ get here, so nothing needs escaping. */
function ident(name: string): string {
  if (!DERIVED_NAME_RE.test(name)) throw new SqlCompileError(`not a valid name for SQL: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

/** A name from a view (field, dimension, metric), checked again: a View may be built without the schema. */
function viewName(name: string): string {
  if (!NAME_RE.test(name)) throw new SqlCompileError(`not a valid name: ${JSON.stringify(name)} (${NAME_RE})`);
  return name;
}

/** A SQL string literal. Both engines read '' as a quote and give backslashes no meaning. */
export function literal(text: string): string {
  if (text.includes('\u0000')) throw new SqlCompileError('a string literal must not contain the NUL character');
  return `'${text.replaceAll("'", "''")}'`;
}

function wholeMs(value: number, what: string): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new SqlCompileError(`${what} must be whole epoch milliseconds, received ${value}`);
  return String(value);
}

function dialectOf(name: SqlDialect): Dialect {
  const d = DIALECTS[name];
  if (!d) throw new SqlCompileError(`dialect must be one of ${SQL_DIALECTS.join(', ')}, received ${JSON.stringify(name)}`);
  return d;
}

/** The RawRecord columns of an archive line, with their Glue (Hive DDL) and DuckDB types. */
const RAW_COLUMNS = [
  { name: 'id', glue: 'string', duckdb: 'VARCHAR' },
  { name: 'type', glue: 'string', duckdb: 'VARCHAR' },
  { name: 'ts', glue: 'bigint', duckdb: 'BIGINT' },
  { name: 'arrival', glue: 'bigint', duckdb: 'BIGINT' },
  { name: 'shard', glue: 'string', duckdb: 'VARCHAR' },
  { name: 'seq', glue: 'string', duckdb: 'VARCHAR' },
  { name: 'fields', glue: 'map<string,string>', duckdb: 'MAP(VARCHAR, VARCHAR)' },
  { name: 'num', glue: 'map<string,string>', duckdb: 'MAP(VARCHAR, VARCHAR)' },
] as const;

/**
 * Columns of the Glue table over `raw/` (one archive line = one row). `fields`
 * and `num` are maps of text, so values stay exactly as toRawRecord wrote them;
 * the SQL casts `num` entries to DECIMAL(38, 9) itself.
 */
export const GLUE_COLUMNS: readonly { readonly name: string; readonly type: string }[] = RAW_COLUMNS.map((c) => ({
  name: c.name,
  type: c.glue,
}));

/** Partition keys of the Glue table: the arrival hour in the object key `raw/dt=YYYY-MM-DD/hr=HH/`. */
export const GLUE_PARTITION_KEYS: readonly { readonly name: string; readonly type: string }[] = [
  { name: 'dt', type: 'string' },
  { name: 'hr', type: 'string' },
];

/**
 * SerDe of the Glue table: the Hive JSON SerDe. Not OpenX's: Athena documents
 * that it may return non-deterministic rows, and its `case.insensitive` default
 * folds keys, while the keys of `fields`/`num` are case-sensitive field names
 * (Trino's readers keep map keys as written: trinodb/trino#20400). Malformed
 * lines fail the query rather than being skipped, so nothing is silently lost.
 */
export const GLUE_SERDE = {
  serializationLibrary: 'org.apache.hive.hcatalog.data.JsonSerDe',
  parameters: {},
} as const;

/**
 * Table parameters for partition projection over `raw/dt=YYYY-MM-DD/hr=HH/`, so
 * Athena enumerates partitions instead of asking Glue, and `athenaSource`'s
 * predicate prunes hours after the cutoff. `location` is the table location
 * (`s3://<bucket>/raw/`, trailing slash); `firstDay` (YYYY-MM-DD) the earliest
 * arrival day to project: keep it near the deployment date, since every
 * projected hour up to the cutoff is listed.
 */
export function glueProjectionParameters(location: string, firstDay: string): Record<string, string> {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(firstDay)) throw new SqlCompileError(`firstDay must be YYYY-MM-DD, received ${JSON.stringify(firstDay)}`);
  const base = location.endsWith('/') ? location : `${location}/`;
  return {
    'projection.enabled': 'true',
    'projection.dt.type': 'date',
    'projection.dt.format': 'yyyy-MM-dd',
    'projection.dt.range': `${firstDay},NOW`,
    'projection.dt.interval': '1',
    'projection.dt.interval.unit': 'DAYS',
    'projection.hr.type': 'integer',
    'projection.hr.range': '0,23',
    'projection.hr.digits': '2',
    'storage.location.template': `${base}dt=\${dt}/hr=\${hr}/`,
  };
}

export interface CompileOptions {
  readonly dialect: SqlDialect;
  /** Exclusive upper bound on arrival (epoch ms): the batch covers arrival < cutoff. */
  readonly cutoff: number;
  /** A table expression over archive lines: `duckdbSource(...)`, `athenaSource(...)`. */
  readonly source: string;
  /**
   * Inclusive lower bound on the arrival of the *first copy* (epoch ms): with it
   * the statement aggregates only events first seen in [since, cutoff), which
   * combined with a batch over arrival < since gives the batch over arrival <
   * cutoff. Dedup still ranks every copy before the cutoff, so a copy arriving
   * after `since` of an id first seen before it is not counted again.
   * @default - every first copy before the cutoff
   */
  readonly since?: number;
}

/** Output column names of `compileView(view)`, in order. */
export function outputColumns(view: View): string[] {
  return ['bucket', ...view.dimensions, ...stateColumns(view).map((c) => c.column)];
}

function metricExpression(component: Component, value: string | null): string {
  switch (component) {
    case 'count':
      return value === null ? 'COUNT(*)' : `COUNT(${value})`;
    case 'sum':
      return `COALESCE(SUM(${value}), 0)`;
    case 'min':
      return `MIN(${value})`;
    case 'max':
      return `MAX(${value})`;
  }
}

/**
 * One SQL statement computing a view's batch rows over the archive lines with
 * arrival < cutoff: per event id the first copy (smallest arrival, then
 * sequence), then the view's filter, grouped by bucket and dimensions.
 */
export function compileView(view: View, options: CompileOptions): string {
  const d = dialectOf(options.dialect);
  const cutoff = wholeMs(options.cutoff, 'cutoff');
  const since = options.since === undefined ? undefined : wholeMs(options.since, 'since');
  if (options.since !== undefined && options.since > options.cutoff) {
    throw new SqlCompileError(`since (${options.since}) must not be after the cutoff (${options.cutoff})`);
  }
  const grainMs = GRAIN_MS[view.grain];
  if (grainMs === undefined) throw new SqlCompileError(`unknown grain ${JSON.stringify(view.grain)}`);

  // Map keys are field names: checked like identifiers, written as literals.
  const field = (name: string) => d.mapGet('fields', literal(viewName(name)));
  // Each metric field is cast once, in `events`, to a column num_<field> (no
  // clash: the only other columns there are ts and fields).
  const valueColumn = (name: string) => ident(`num_${viewName(name)}`);
  const values = metricFields(view).map((f) => `${d.toDecimal(d.mapGet('num', literal(viewName(f))))} AS ${valueColumn(f)}`);

  const select = [
    // Integer arithmetic (no timestamps, no time zones): ts >= year 2000, so % is a floor.
    `ts - ts % ${grainMs} AS "bucket"`,
    ...view.dimensions.map((dim) => `${field(dim)} AS ${ident(viewName(dim))}`),
    ...stateColumns(view).map((c) => {
      const m = view.metrics[viewName(c.metric)]!;
      return `${metricExpression(c.component, m.fn === 'count' ? null : valueColumn(m.field))} AS ${ident(c.column)}`;
    }),
  ];
  const where = Object.entries(view.filter ?? {}).map(([name, want]) => `${field(name)} = ${literal(canonicalValue(want)!)}`);
  const groups = select.slice(0, 1 + view.dimensions.length).map((_, i) => String(i + 1));

  // The arrival < cutoff filter goes before the ranking. The batch must count the
  // events whose first copy over ALL records (the speed layer's rule) arrived
  // before the cutoff. Every other copy of an id arrives at or after the first;
  // so if the first copy is before the cutoff it is also first among the copies
  // before the cutoff, and if it is not, no copy is before the cutoff. Ranking
  // only the copies before the cutoff keeps exactly the same events, reads less,
  // and lets Athena skip the partitions after the cutoff.
  // The view's filter comes after the ranking: the first copy decides, even if a
  // later copy of the id carries other field values.
  return [
    'WITH ranked AS (',
    '  SELECT',
    '    ts, arrival, fields, num,',
    '    ROW_NUMBER() OVER (PARTITION BY id ORDER BY arrival, seq) AS copy_rank',
    `  FROM ${options.source}`,
    `  WHERE arrival < ${cutoff}`,
    '),',
    'events AS (',
    '  SELECT',
    ['ts, fields', ...values].map((line) => `    ${line}`).join(',\n'),
    '  FROM ranked',
    `  WHERE copy_rank = 1${since === undefined ? '' : ` AND arrival >= ${since}`}`,
    ')',
    'SELECT',
    select.map((line) => `  ${line}`).join(',\n'),
    'FROM events',
    ...(where.length > 0 ? [`WHERE ${where.join('\n  AND ')}`] : []),
    `GROUP BY ${groups.join(', ')}`,
    // Explicit NULLS FIRST (as query.ts sortRows): DuckDB's default null order is a setting.
    `ORDER BY ${groups.map((p, i) => (i === 0 ? p : `${p} NULLS FIRST`)).join(', ')}`,
  ].join('\n');
}

/**
 * Counts for the batch's completeness check: archive lines (`records`) and
 * distinct event ids (`ids`) with arrival < cutoff, to compare with the
 * archive checkpoints' record counts (Athena answers zero rows, not an error,
 * for partitions that are missing).
 */
export function countSql(dialect: SqlDialect, source: string, cutoff: number): string {
  dialectOf(dialect);
  return [
    'SELECT COUNT(*) AS "records", COUNT(DISTINCT id) AS "ids"',
    `FROM ${source}`,
    `WHERE arrival < ${wholeMs(cutoff, 'cutoff')}`,
  ].join('\n');
}

/**
 * DuckDB table expression over staged archive objects (gzip NDJSON RawRecord
 * lines), with explicit column types so nothing depends on auto-detection:
 * `fields` and `num` are MAP(VARCHAR, VARCHAR) (JSON null values become NULL),
 * numbers stay text until the compiled SQL casts them to DECIMAL(38, 9). With
 * no files, an empty relation of the same columns (a fresh archive is not an error).
 */
export function duckdbSource(files: readonly string[]): string {
  if (files.length === 0) {
    const columns = RAW_COLUMNS.map((c) => `CAST(NULL AS ${c.duckdb}) AS ${c.name}`).join(', ');
    return `(SELECT ${columns} WHERE false)`;
  }
  // DuckDB reads each path as a glob pattern: a staged name with one would read other files.
  const glob = files.find((f) => /[*?[\]{}]/.test(f));
  if (glob !== undefined)
    throw new SqlCompileError(`staged file paths must not contain glob characters (* ? [ ] { }), received ${JSON.stringify(glob)}`);
  const columns = RAW_COLUMNS.map((c) => `${literal(c.name)}: ${literal(c.duckdb)}`).join(', ');
  return [
    'read_json(',
    `    [${files.map(literal).join(', ')}],`,
    "    format = 'newline_delimited', compression = 'gzip', hive_partitioning = false,",
    `    columns = {${columns}}`,
    '  )',
  ].join('\n');
}

/** `YYYY-MM-DD` and `HH` of the arrival hour holding `ms` (UTC), as in the archive's object keys. */
export function arrivalPartition(ms: number): { dt: string; hr: string } {
  const text = iso(ms);
  return { dt: text.slice(0, 10), hr: text.slice(11, 13) };
}

/**
 * Athena table expression over the Glue table of the archive, restricted to
 * the partitions that can hold arrival < cutoff (the hour of cutoff - 1 ms and
 * before), so Athena's partition projection never lists objects after the cutoff.
 */
export function athenaSource(database: string, table: string, cutoff: number): string {
  const last = arrivalPartition(Number(wholeMs(cutoff, 'cutoff')) - 1);
  const columns = RAW_COLUMNS.map((c) => c.name).join(', ');
  return [
    '(',
    `    SELECT ${columns}`,
    `    FROM ${athenaName(database)}.${athenaName(table)}`,
    `    WHERE dt < ${literal(last.dt)} OR (dt = ${literal(last.dt)} AND hr <= ${literal(last.hr)})`,
    '  )',
  ].join('\n');
}

/** Glue database and table names: Glue stores them in lowercase; `"` never occurs, so quoting is enough. */
function athenaName(name: string): string {
  if (!/^[a-z0-9_-]{1,255}$/.test(name)) {
    throw new SqlCompileError(`Glue database and table names must be lowercase letters, digits, _ or -, received ${JSON.stringify(name)}`);
  }
  return `"${name}"`;
}

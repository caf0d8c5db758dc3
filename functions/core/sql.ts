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
 * Output columns, in this order (see `outputColumns`): the bucket (BIGINT epoch
 * ms), each dimension (text, NULL when absent), then the state columns of
 * metrics.ts `stateColumns(view)`: counts BIGINT, sums/min/max DECIMAL(38, 9),
 * sketches of `distinct` text (their registers, hll.ts `parseSqlSketch`).
 * The SQL names them by position only (`c0`, `c1`, ...): names from a view may
 * differ only in case, and Trino folds even quoted identifiers. Readers map
 * columns by position (`outputColumns` gives the logical names), and read
 * decimals as text, never as doubles.
 */
import { PRECISION, SCALE } from './decimal.ts';
import type { Component } from './metrics.ts';
import { stateColumns } from './metrics.ts';
import { GRAIN_MS, iso } from './time.ts';
import { canonicalValue, distinctFields, metricFields, NAME_RE, type View } from './views.ts';

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
 * CAST(x AS DECIMAL(38, 9)), % and - on BIGINT, LAG() OVER, ordinals in GROUP BY
 * and ORDER BY, NULLS FIRST.
 */
/** The exact type of every metric value in SQL (DECIMAL(38, 9), as decimal.ts). */
const DECIMAL_TYPE = `DECIMAL(${PRECISION}, ${SCALE})`;

interface Dialect {
  /** Text of a map entry, NULL when the key is absent. */
  readonly mapGet: (map: string, key: string) => string;
  /** Exact DECIMAL(38, 9) of a decimal text. */
  readonly toDecimal: (text: string) => string;
  /** MD5 of a text's UTF-8 bytes as 32 lowercase hex digits, NULL for NULL (hll.ts). */
  readonly md5Hex: (text: string) => string;
  /**
   * The texts of a group concatenated in the order of `order`, which each text starts with at a fixed width and which
   * is unique in the group (so ordering the texts orders by it).
   */
  readonly concatAgg: (text: string, order: string) => string;
}

const DIALECTS: Record<SqlDialect, Dialect> = {
  // Trino's map[key] fails the query on a missing key; element_at returns NULL.
  // Its md5 takes and returns varbinary, and to_hex writes uppercase; it has no string_agg.
  athena: {
    mapGet: (map, key) => `element_at(${map}, ${key})`,
    toDecimal: (x) => `CAST(${x} AS ${DECIMAL_TYPE})`,
    md5Hex: (x) => `lower(to_hex(md5(to_utf8(${x}))))`,
    concatAgg: (x, order) => `array_join(array_agg(${x} ORDER BY ${order}), '')`,
  },
  // DuckDB's element_at returns a list; map[key] returns the value or NULL.
  // Its text -> DECIMAL(38, 9) cast is ~30x slower than to DECIMAL(18, 9) (measured by
  // bench/batch.ts): inputs have <= 15 significant digits, so nearly all fit the narrow type
  // exactly; the wide cast is only the fallback. Both are exact, never a DOUBLE.
  // Its md5 of a VARCHAR hashes the UTF-8 bytes and returns lowercase hex. Its ordered aggregates buffer and sort
  // each group apart (string_agg(x, '' ORDER BY o) was half of page_views' rebuild SQL): a list sorted after the
  // aggregate gives the same text (each text starts with its unique, fixed-width key), 3.6x faster over 394,000 groups.
  duckdb: {
    mapGet: (map, key) => `${map}[${key}]`,
    toDecimal: (x) => `COALESCE(CAST(TRY_CAST(${x} AS DECIMAL(18, ${SCALE})) AS ${DECIMAL_TYPE}), CAST(${x} AS ${DECIMAL_TYPE}))`,
    md5Hex: (x) => `md5(${x})`,
    concatAgg: (x) => `array_to_string(list_sort(list(${x})), '')`,
  },
};

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

function wholeMs(value: number, what: string, unit = 'epoch milliseconds'): string {
  if (!Number.isSafeInteger(value) || value < 0) throw new SqlCompileError(`${what} must be whole ${unit}, received ${value}`);
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

/** Key prefix, in the raw bucket, of the compacted arrival hours (Parquet; the compacted Glue table's location). */
export const COMPACT_PREFIX = 'compact/';

/** Columns of the Glue table over `compact/` (Parquet: COMPACT_COLUMNS, the columns the batch reads). */
export const GLUE_COMPACT_COLUMNS: readonly { readonly name: string; readonly type: string }[] = RAW_COLUMNS.filter(
  (c) => c.name !== 'type',
).map((c) => ({ name: c.name, type: c.glue }));

/** SerDe and formats of the Glue table over `compact/`: Hive's Parquet SerDe (what Athena reads Parquet with). */
export const GLUE_PARQUET_SERDE = {
  serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe',
  inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
  outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
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
   * The dedup horizon H, ms (settings.dedupHorizonSeconds * 1000): a copy does not
   * count when the previous copy of its id arrived at most H before it.
   */
  readonly horizonMs: number;
  /**
   * Inclusive lower bound on the arrival of the counted copies (epoch ms): the
   * statement then aggregates only the copies that count and arrived in
   * [since, cutoff), the increment that, combined with the batch over arrival <
   * since, gives the batch over arrival < cutoff. It reads only the copies
   * that arrived at or after since - H (`rawReadRange`).
   * @default - every counted copy before the cutoff (a rebuild)
   */
  readonly since?: number;
  /**
   * `source` already holds only the copies that count, as `compileCounted` with the same cutoff, horizon and since
   * selects them: the statement aggregates it as it is (no dedup). An engine that runs several views over the same
   * lines decides which copies count once (the window over every copy is most of a view's cost), then each view
   * aggregates. @default false
   */
  readonly counted?: boolean;
  /**
   * Whether the rows come out ordered by bucket and dimension values. A reader that orders them itself, or needs no
   * order (duckdb.ts viewRows), spares the engine the sort. @default true
   */
  readonly ordered?: boolean;
  /**
   * `source` holds the map entries the view reads as columns of their own (`flatColumns`, with `counted`): the
   * statement reads those columns, not the maps. An engine that parses the lines once for several views keeps only
   * the entries they read, as plain columns (no map per line to build and store). @default the maps `fields`, `num`
   */
  readonly columns?: FlatColumns;
}

/** Map entries held as columns of their own: field name -> column, for `fields` and for `num` (CompileOptions.columns). */
export interface FlatColumns {
  readonly fields: ReadonlyMap<string, string>;
  readonly num: ReadonlyMap<string, string>;
}

/**
 * The entries of `fields` and `num` that the views read (dimensions, filters and distinct fields of `fields`; metric
 * fields of `num`), each as a column named by position (`f0`, `f1`, ... and `n0`, ...: names from views differ only in
 * case sometimes, and engines fold the case of identifiers).
 */
export function flatColumns(views: readonly View[]): FlatColumns {
  const fields = new Set<string>();
  const num = new Set<string>();
  for (const v of views) {
    for (const d of v.dimensions) fields.add(viewName(d));
    for (const f of Object.keys(v.filter ?? {})) fields.add(viewName(f));
    for (const f of distinctFields(v)) fields.add(viewName(f));
    for (const f of metricFields(v)) num.add(viewName(f));
  }
  return {
    fields: new Map([...fields].map((f, i) => [f, `"f${i}"`])),
    num: new Map([...num].map((f, i) => [f, `"n${i}"`])),
  };
}

/** The select items making `flatColumns`' columns from lines with the maps (DuckDB SQL), in column order. */
export function flatColumnItems(columns: FlatColumns): string[] {
  return [
    ...[...columns.fields].map(([name, column]) => `fields[${literal(name)}] AS ${column}`),
    ...[...columns.num].map(([name, column]) => `num[${literal(name)}] AS ${column}`),
  ];
}

/** Output column names of `compileView(view)`, in order: the logical names, by position (the SQL names them `c0`, `c1`, ...). */
export function outputColumns(view: View): string[] {
  return ['bucket', ...view.dimensions, ...stateColumns(view).map((c) => c.column)];
}

/**
 * The arrival range [from, to) of archive lines a statement with these options
 * reads: from = since - H for an increment (an older copy is more than H before
 * any copy the increment counts), null for a rebuild (all history). Engines
 * read only the objects of the arrival hours that overlap it.
 */
export function rawReadRange(cutoff: number, horizonMs: number, since?: number): { from: number | null; to: number } {
  const bounds = readBounds(cutoff, horizonMs, since);
  return { from: bounds.from, to: cutoff };
}

function readBounds(cutoff: number, horizonMs: number, since: number | undefined): { from: number | null; since: number | null } {
  wholeMs(cutoff, 'cutoff');
  wholeMs(horizonMs, 'horizonMs', 'milliseconds >= 0');
  if (since === undefined) return { from: null, since: null };
  wholeMs(since, 'since');
  if (since > cutoff) throw new SqlCompileError(`since (${since}) must not be after the cutoff (${cutoff})`);
  return { from: Math.max(0, since - horizonMs), since };
}

/** One item of a SELECT list, with an optional comment (a name from the view or a derived one: letters, digits, _). */
interface SelectItem {
  readonly sql: string;
  readonly note?: string | undefined;
}

/** A SELECT list, one item a line, each comment after its comma. */
function selectList(items: readonly SelectItem[], indent: string): string {
  return items
    .map((item, i) => `${indent}${item.sql}${i < items.length - 1 ? ',' : ''}${item.note === undefined ? '' : ` -- ${item.note}`}`)
    .join('\n');
}

/** Partial aggregates of a state column combined by its monoid: counts and sums add up, min and max. */
function rolledUp(partial: string, component: Component): string {
  if (component === 'count' || component === 'sum') return `SUM(${partial})`;
  if (component === 'min') return `MIN(${partial})`;
  if (component === 'max') return `MAX(${partial})`;
  throw new SqlCompileError('a sketch is not a plain aggregate (compileView lists its registers)');
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
    case 'hll':
      throw new SqlCompileError('a sketch is not a plain aggregate (compileView joins it)');
  }
}

/**
 * The rank of a hash (hll.ts) from `tail`: its hex digits 4-16 (the 52 bits after the register
 * index) with `8` (bit 1000) appended, leading zeros trimmed. Each trimmed digit is 4 zero bits;
 * the first digit left adds its own leading zeros + 1 (8-f: 1, 4-7: 2, 2-3: 3, 1: 4). The
 * appended bit caps the rank at 53 when all 52 bits are zero. Hex digits compare as text
 * (0-9 < a-f), so `tail >= '8'` tests its first digit.
 */
const RANK_SQL = "4 * (14 - length(tail)) + CASE WHEN tail >= '8' THEN 1 WHEN tail >= '4' THEN 2 WHEN tail >= '2' THEN 3 ELSE 4 END";

/** A hash's register index: its hex digits 1-3. */
const registerOf = (hash: string) => `substr(${hash}, 1, 3)`;
/**
 * What RANK_SQL reads of a hash: its hex digits 4-16 with `8` appended, leading zeros trimmed (by regexp_replace, not
 * trim(LEADING '0' FROM ...), which node-sql-parser's Trino grammar, sql.golden.test.ts, cannot read).
 */
const tailOf = (hash: string) => `regexp_replace(substr(${hash}, 4, 13) || '8', '^0+', '')`;
/** A register's entry in a sketch's register list (hll.ts parseSqlSketch): `<reg><rank, 2 digits>`, sorted by reg. */
const REGISTER_ENTRY = "reg || lpad(CAST(rnk AS VARCHAR), 2, '0')";

/**
 * One SQL statement computing a view's batch rows over the archive lines with
 * arrival < cutoff: the copies that count under the dedup rule (a copy counts
 * iff the previous copy of its id, by (arrival, shard, seq), is absent or
 * arrived more than H before it), then the view's filter, grouped by bucket and
 * dimensions.
 */
/** The `copies` CTE: every copy read, with the arrival of the previous copy of its id in (arrival, shard, seq) order. */
function copiesHead(source: string, read: readonly string[]): string[] {
  return [
    'WITH copies AS (',
    '  SELECT',
    '    ts, arrival, fields, num,',
    '    LAG(arrival) OVER (PARTITION BY id ORDER BY arrival, shard, seq) AS prev_arrival',
    `  FROM ${source}`,
    `  WHERE ${read.join(' AND ')}`,
    '),',
  ];
}

/**
 * The copies that count (ts, fields, num), by the same rule and bounds as `compileView` with these options: what a
 * `counted` compileView aggregates. Shared by the views of one engine session (duckdb.ts); DuckDB SQL only.
 *
 * Most ids have one copy, which counts by the rule whenever the bounds let it (no copy before it): only the ids with
 * several copies in the range read (`repeated`, a hash aggregate) go through the window, and the others are taken as
 * they are. The same rows as the window over every copy (the DuckDB property test compares both), at less than half
 * its cost on a rebuild: the window sorts every copy with its maps. `IS NOT DISTINCT FROM`: an id that is null still
 * falls on one side, as PARTITION BY puts nulls together.
 */
export function compileCounted(options: Omit<CompileOptions, 'counted'>): string {
  if (dialectOf(options.dialect) !== DIALECTS.duckdb)
    throw new SqlCompileError(`compileCounted is DuckDB SQL, received dialect ${options.dialect}`);
  const { read, counts } = dedupClauses(options);
  const since = counts.slice(1);
  const where = (extra: readonly string[]) => [...read, ...extra].join(' AND ');
  return [
    'WITH repeated AS (',
    `  SELECT id FROM ${options.source}`,
    `  WHERE ${where([])}`,
    '  GROUP BY id',
    '  HAVING COUNT(*) > 1',
    '),',
    'copies AS (',
    '  SELECT',
    '    ts, arrival, fields, num,',
    '    LAG(arrival) OVER (PARTITION BY s.id ORDER BY arrival, shard, seq) AS prev_arrival',
    `  FROM ${options.source} s`,
    '  SEMI JOIN repeated r ON s.id IS NOT DISTINCT FROM r.id',
    `  WHERE ${where([])}`,
    ')',
    'SELECT ts, fields, num',
    `FROM ${options.source} s`,
    'ANTI JOIN repeated r ON s.id IS NOT DISTINCT FROM r.id',
    `WHERE ${where(since)}`,
    'UNION ALL',
    'SELECT ts, fields, num',
    'FROM copies',
    `WHERE ${counts.join(' AND ')}`,
  ].join('\n');
}

/**
 * The other form of `compileCounted` (DuckDB SQL only), for a `source` that is a table: `compileDropped` selects the
 * `rowid`s (column `r`) of the copies the rule does not count among the ids with several copies in the range read
 * (their previous copy arrived within H), and `countedSource(options, dropped)` is then the counted copies (ts, fields,
 * num): the lines read, from `since` on, less those. The same rows as compileCounted (the DuckDB property test
 * compares both), without copying every counted line with its maps into a table of its own.
 */
export function compileDropped(options: Omit<CompileOptions, 'counted'>): string {
  if (dialectOf(options.dialect) !== DIALECTS.duckdb)
    throw new SqlCompileError(`compileDropped is DuckDB SQL, received dialect ${options.dialect}`);
  const { read, counts } = dedupClauses(options);
  return [
    'WITH repeated AS (',
    `  SELECT id FROM ${options.source}`,
    `  WHERE ${read.join(' AND ')}`,
    '  GROUP BY id',
    '  HAVING COUNT(*) > 1',
    '),',
    'copies AS (',
    '  SELECT',
    '    s.rowid AS r, arrival,',
    '    LAG(arrival) OVER (PARTITION BY s.id ORDER BY arrival, shard, seq) AS prev_arrival',
    `  FROM ${options.source} s`,
    '  SEMI JOIN repeated r ON s.id IS NOT DISTINCT FROM r.id',
    `  WHERE ${read.join(' AND ')}`,
    ')',
    'SELECT r',
    'FROM copies',
    `WHERE NOT ${counts[0]}`,
  ].join('\n');
}

/**
 * The counted copies of `options.source` (a table) given the table `dropped` of compileDropped with the same options:
 * their `ts` and maps, or with `columns` their `ts` and those columns.
 */
export function countedSource(options: Omit<CompileOptions, 'counted'>, dropped: string, columns?: FlatColumns): string {
  const { read, counts } = dedupClauses(options);
  const select = columns ? ['ts', ...columns.fields.values(), ...columns.num.values()].join(', ') : 'ts, fields, num';
  return `(SELECT ${select} FROM ${options.source} s ANTI JOIN ${dropped} d ON s.rowid = d.r WHERE ${[...read, ...counts.slice(1)].join(' AND ')})`;
}

/**
 * The dedup rule's clauses: `read`, the arrivals read (the `copies` CTE's WHERE), and `counts`, which copies count.
 *
 * Whether a copy counts depends only on the previous copy of its id in the
 * (arrival, shard, seq) order (LAG). Reading only the arrivals in [from,
 * cutoff) keeps every counted decision exact: those copies are one interval
 * of that order, so a copy's previous copy is the same as over all history,
 * or it was not read. A previous copy is never at or after the cutoff when
 * the copy is before it; so one not read arrived before from = since - H,
 * more than H before every copy counted here (arrival >= since), and that
 * copy counts either way. The bounds on arrival also let Athena skip the
 * partitions outside [from, cutoff).
 */
function dedupClauses(options: Pick<CompileOptions, 'cutoff' | 'horizonMs' | 'since'>): { read: string[]; counts: string[] } {
  const cutoff = wholeMs(options.cutoff, 'cutoff');
  const horizon = wholeMs(options.horizonMs, 'horizonMs', 'milliseconds >= 0');
  const bounds = readBounds(options.cutoff, options.horizonMs, options.since);
  return {
    read: [`arrival < ${cutoff}`, ...(bounds.from === null ? [] : [`arrival >= ${bounds.from}`])],
    counts: [
      `(prev_arrival IS NULL OR arrival - prev_arrival > ${horizon})`,
      ...(bounds.since === null ? [] : [`arrival >= ${bounds.since}`]),
    ],
  };
}

export function compileView(view: View, options: CompileOptions): string {
  const d = dialectOf(options.dialect);
  if (options.columns && !options.counted)
    throw new SqlCompileError('columns of map entries are read from counted copies only (counted: true)');
  const { read, counts } = dedupClauses(options);
  const grainMs = GRAIN_MS[view.grain];
  if (grainMs === undefined) throw new SqlCompileError(`unknown grain ${JSON.stringify(view.grain)}`);

  // Map keys are field names: checked like identifiers, written as literals (or the column holding the entry).
  const entry = (map: 'fields' | 'num', name: string) => {
    if (!options.columns) return d.mapGet(map, literal(name));
    const column = options.columns[map].get(name);
    if (column === undefined) throw new SqlCompileError(`the source has no column for ${map}[${JSON.stringify(name)}]`);
    return column;
  };
  const field = (name: string) => entry('fields', viewName(name));
  // Every derived column is named by position (v0, v1, ... for the metric
  // values; c0, c1, ... for the output), never after a view's name: Trino folds
  // even quoted identifiers to lowercase, so `amount` and `Amount` would
  // collide (rejected as ambiguous in Trino, silently the same column in DuckDB).
  const fields = metricFields(view).map(viewName);
  const valueColumn = (name: string) => `"v${fields.indexOf(name)}"`;
  // Each metric field is cast once, in `events`; each distinct field hashed once (h0, h1, ...).
  const hashed = distinctFields(view).map(viewName);
  const hashColumn = (name: string) => `"h${hashed.indexOf(name)}"`;
  // The row's key (bucket, dimension values) is computed once per event, in `events`, as "k0", "k1", ...: the
  // aggregates and each sketch's registers group by those columns instead of reading the maps again.
  const keyExpressions = [
    // Integer arithmetic (no timestamps, no time zones): ts >= year 2000, so % is a floor.
    `ts - ts % ${grainMs}`,
    ...view.dimensions.map((dim) => field(dim)),
  ];
  const keys = keyExpressions.map((_, i) => `"k${i}"`);
  const values: SelectItem[] = [
    ...keyExpressions.map((e, i) => ({ sql: `${e} AS ${keys[i]}` })),
    ...fields.map((f) => ({ sql: `${d.toDecimal(entry('num', f))} AS ${valueColumn(f)}` })),
    ...hashed.map((f) => ({ sql: `${d.md5Hex(entry('fields', f))} AS ${hashColumn(f)}` })),
  ];

  const state = stateColumns(view);
  const expressions = [
    ...keys,
    ...state.map((c) => {
      const m = view.metrics[viewName(c.metric)]!;
      // A sketch column comes from its own CTE (`sketches` below); a placeholder here.
      if (c.component === 'hll') return '';
      return metricExpression(c.component, m.fn === 'count' ? null : valueColumn(m.field));
    }),
  ];
  // A comment after each output column names it (`outputColumns`): names from the view match NAME_RE, so no line break.
  const names = outputColumns(view);
  const select: SelectItem[] = expressions.map((expression, i) => ({ sql: `${expression} AS "c${i}"`, note: names[i] }));
  const where = Object.entries(view.filter ?? {}).map(([name, want]) => `${field(name)} = ${literal(canonicalValue(want)!)}`);
  const groups = select.slice(0, 1 + view.dimensions.length).map((_, i) => String(i + 1));

  // The view's filter comes after the dedup (dedupClauses): the counted copy's fields decide,
  // even if another copy of the id carries other values.
  // The view's filter too: `events` holds the counted copies the view aggregates.
  const eventsWhere = (first: readonly string[]) => {
    const all = [...first, ...where];
    return all.length > 0 ? [`  WHERE ${all.join('\n    AND ')}`] : [];
  };
  const head = options.counted
    ? ['WITH events AS (', '  SELECT', selectList(values, '    '), `  FROM ${options.source}`, ...eventsWhere([]), ')']
    : [
        ...copiesHead(options.source, read),
        'events AS (',
        '  SELECT',
        selectList(values, '    '),
        '  FROM copies',
        ...eventsWhere([counts.join(' AND ')]),
        ')',
      ];
  // Explicit NULLS FIRST (as query.ts sortRows): DuckDB's default null order is a setting.
  const orderBy = options.ordered === false ? [] : [`ORDER BY ${groups.map((p, i) => (i === 0 ? p : `${p} NULLS FIRST`)).join(', ')}`];
  const whereLines = (extra: readonly string[], indent: string) =>
    extra.length > 0 ? [`${indent}WHERE ${extra.join(`\n${indent}  AND `)}`] : [];
  if (hashed.length === 0) {
    return [
      ...head,
      'SELECT',
      selectList(select, '  '),
      'FROM events',
      ...whereLines([], ''),
      `GROUP BY ${groups.join(', ')}`,
      ...orderBy,
    ].join('\n');
  }

  if (d === DIALECTS.duckdb && hashed.length === 1) {
    // One field hashed (every distinct metric of the view counts it): one pass. Each row's events are grouped by
    // register first (`registers`: the largest rank, and the row's aggregates over the register's events, null hashes
    // under a null register), then by row, each state column combined by its monoid and the registers listed: the
    // same rows as the form below, without its second scan of the events and its join (2.4x faster on page_views).
    const h = hashColumn(hashed[0]!);
    const stateItems = state.map((c, i) => {
      const m = view.metrics[viewName(c.metric)]!;
      return { c, i, value: m.fn === 'count' ? null : valueColumn(m.field) };
    });
    const partials: SelectItem[] = stateItems
      .filter(({ c }) => c.component !== 'hll')
      .map(({ c, i, value }) => ({ sql: `${metricExpression(c.component, value)} AS "p${i}"`, note: names[keys.length + i] }));
    const merged: SelectItem[] = [
      ...keys.map((k, j) => ({ sql: `${k} AS "c${j}"`, note: names[j] })),
      ...stateItems.map(({ c, i }) => ({
        sql:
          c.component === 'hll'
            ? // A null register's entry is null (null || text), which array_to_string leaves out.
              `NULLIF(${d.concatAgg(REGISTER_ENTRY, 'reg')}, '') AS "c${keys.length + i}"`
            : `${rolledUp(`"p${i}"`, c.component)} AS "c${keys.length + i}"`,
        note: names[keys.length + i],
      })),
    ];
    return [
      ...head.slice(0, -1),
      '),',
      'registers AS ( -- per row and register: the largest rank, and the aggregates of its events',
      '  SELECT',
      `    ${keys.join(', ')}, reg,`,
      selectList([{ sql: `MAX(${RANK_SQL}) AS rnk` }, ...partials], '    '),
      '  FROM (',
      '    SELECT',
      `      *, ${registerOf(h)} AS reg,`,
      `      ${tailOf(h)} AS tail`,
      '    FROM events',
      '  )',
      `  GROUP BY ${[...groups, String(keys.length + 1)].join(', ')}`,
      ')',
      'SELECT',
      selectList(merged, '  '),
      'FROM registers',
      `GROUP BY ${groups.join(', ')}`,
      ...orderBy,
    ].join('\n');
  }

  // A view with distinct metrics: the plain aggregates per row in `aggregates`; per distinct metric,
  // the largest rank per row and register (`registers<k>`), then the row's register list
  // (`sketch<k>`, `<index hex><rank, 2 digits>...` in index order, hll.ts parseSqlSketch),
  // joined to its row (the same filter, so a sketch's rows are among `aggregates`' rows).
  const keyNames = keys.map((_, i) => `"c${i}"`);
  const plain = select.filter((_, i) => i < keys.length || state[i - keys.length]!.component !== 'hll');
  const blocks: string[][] = [
    [
      'aggregates AS (',
      '  SELECT',
      selectList(plain, '    '),
      '  FROM events',
      ...whereLines([], '  '),
      `  GROUP BY ${groups.join(', ')}`,
      ')',
    ],
  ];
  const sketchIndex = new Map<string, number>();
  for (const c of state) {
    if (c.component !== 'hll') continue;
    const m = view.metrics[viewName(c.metric)]!;
    if (m.fn !== 'distinct') throw new SqlCompileError(`metric ${c.metric}: only distinct has a sketch`);
    const k = sketchIndex.size;
    sketchIndex.set(c.column, k);
    const h = hashColumn(m.field);
    const perEvent: SelectItem[] = [
      ...keys.map((expression, j) => ({ sql: `${expression} AS "c${j}"`, note: names[j] })),
      { sql: `${registerOf(h)} AS reg` },
      { sql: `${tailOf(h)} AS tail` },
    ];
    blocks.push(
      [
        `registers${k} AS ( -- ${c.column}: the largest rank per row and register`,
        '  SELECT',
        `    ${keyNames.join(', ')}, reg,`,
        `    MAX(${RANK_SQL}) AS rnk`,
        '  FROM (',
        '    SELECT',
        selectList(perEvent, '      '),
        '    FROM events',
        ...whereLines([`${h} IS NOT NULL`], '    '),
        '  )',
        `  GROUP BY ${[...groups, String(keys.length + 1)].join(', ')}`,
        ')',
      ],
      [
        `sketch${k} AS ( -- ${c.column}: the row's registers in index order`,
        '  SELECT',
        `    ${keyNames.join(', ')},`,
        `    ${d.concatAgg(REGISTER_ENTRY, 'reg')} AS regs`,
        `  FROM registers${k}`,
        `  GROUP BY ${groups.join(', ')}`,
        ')',
      ],
    );
  }
  const outer: SelectItem[] = names.map((name, i) => {
    const c = i < keys.length ? undefined : state[i - keys.length];
    const k = c === undefined ? undefined : sketchIndex.get(c.column);
    return { sql: `${k === undefined ? `g."c${i}"` : `s${k}.regs`} AS "c${i}"`, note: name };
  });
  const joins = [...sketchIndex.values()].map((k) => {
    // Null-safe on the dimensions, as equalities only: `a = b OR (a IS NULL AND b IS NULL)` keeps engines from a
    // hash join (DuckDB fell back to a nested-loop join: a 90-day rebuild's page_views took minutes, quadratic), and
    // node-sql-parser's Trino grammar cannot read IS NOT DISTINCT FROM. Equal texts and equal null-ness is exact.
    const on = keyNames.flatMap((n, j) =>
      j === 0 ? [`s${k}.${n} = g.${n}`] : [`COALESCE(s${k}.${n}, '') = COALESCE(g.${n}, '')`, `(s${k}.${n} IS NULL) = (g.${n} IS NULL)`],
    );
    return `LEFT JOIN sketch${k} s${k}\n  ON ${on.join('\n  AND ')}`;
  });
  return [
    ...head.slice(0, -1),
    '),',
    ...blocks.flatMap((b, i) => (i < blocks.length - 1 ? [...b.slice(0, -1), '),'] : b)),
    'SELECT',
    selectList(outer, '  '),
    'FROM aggregates g',
    ...joins,
    ...orderBy,
  ].join('\n');
}

/**
 * Counts for a completeness check: archive lines (`records`) with arrival <
 * cutoff, to compare with the archive checkpoints' record counts (Athena
 * answers zero rows, not an error, for partitions that are missing), and the
 * distinct event ids (`ids`) among them.
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

/**
 * The archive columns the batch reads (compileView: the dedup order id/arrival/shard/seq, the bucket ts, the maps),
 * the columns a compacted hour's Parquet object holds (functions/batch/compact.ts), with their DuckDB types.
 */
export const COMPACT_COLUMNS: readonly { readonly name: string; readonly duckdb: string }[] = RAW_COLUMNS.filter((c) => c.name !== 'type');

/**
 * DuckDB table expression over staged Parquet objects of compacted hours: the columns they were written with
 * (COMPACT_COLUMNS; `fields` and `num` stay MAP(VARCHAR, VARCHAR) text, so numbers stay exact).
 */
export function duckdbParquetSource(files: readonly string[]): string {
  if (files.length === 0) throw new SqlCompileError('duckdbParquetSource needs at least one file');
  const glob = files.find((f) => /[*?[\]{}]/.test(f));
  if (glob !== undefined)
    throw new SqlCompileError(`staged file paths must not contain glob characters (* ? [ ] { }), received ${JSON.stringify(glob)}`);
  return `read_parquet([${files.map(literal).join(', ')}], hive_partitioning = false)`;
}

/** `YYYY-MM-DD` and `HH` of the arrival hour holding `ms` (UTC), as in the archive's object keys. */
export function arrivalPartition(ms: number): { dt: string; hr: string } {
  const text = iso(ms);
  return { dt: text.slice(0, 10), hr: text.slice(11, 13) };
}

/**
 * Athena table expression over the Glue table of the archive, restricted to
 * the partitions that can hold from <= arrival < cutoff (the hour of from and
 * after, the hour of cutoff - 1 ms and before; `rawReadRange` gives both), so
 * Athena's partition projection never lists objects outside that range.
 * Without `from` (null: a rebuild), every hour before the cutoff.
 */
export function athenaSource(
  database: string,
  table: string,
  cutoff: number,
  from?: number | null,
  compacted?: { readonly table: string; readonly hours: readonly number[] },
): string {
  const last = arrivalPartition(Number(wholeMs(cutoff, 'cutoff')) - 1);
  const columns = RAW_COLUMNS.map((c) => c.name).join(', ');
  const upTo = `(dt < ${literal(last.dt)} OR (dt = ${literal(last.dt)} AND hr <= ${literal(last.hr)}))`;
  const first = from === undefined || from === null ? undefined : arrivalPartition(Number(wholeMs(from, 'from')));
  const since = first && `(dt > ${literal(first.dt)} OR (dt = ${literal(first.dt)} AND hr >= ${literal(first.hr)}))`;
  if (compacted && compacted.hours.length > 0) {
    // Compacted hours from the Parquet table, the others from the raw table; `type` is in the raw table only.
    const range = since ? `${since} AND ${upTo}` : upTo.slice(1, -1);
    const hours = hoursPredicate(compacted.hours);
    const names = COMPACT_COLUMNS.map((c) => c.name).join(', ');
    return [
      '(',
      `    SELECT ${names} FROM ${athenaName(database)}.${athenaName(compacted.table)} WHERE ${range} AND ${hours}`,
      '    UNION ALL',
      `    SELECT ${names} FROM ${athenaName(database)}.${athenaName(table)} WHERE ${range} AND NOT ${hours}`,
      '  )',
    ].join('\n');
  }
  return [
    '(',
    `    SELECT ${columns}`,
    `    FROM ${athenaName(database)}.${athenaName(table)}`,
    `    WHERE ${since ? `${since} AND ${upTo}` : upTo.slice(1, -1)}`,
    '  )',
  ].join('\n');
}

/**
 * A partition predicate matching exactly the given arrival hours: `dt IN (...)` for whole days,
 * `(dt = D AND hr IN (...))` for the hours of other days.
 */
export function hoursPredicate(hours: readonly number[]): string {
  const byDay = new Map<string, Set<string>>();
  for (const h of hours) {
    const { dt, hr } = arrivalPartition(Number(wholeMs(h, 'hour')));
    byDay.set(dt, (byDay.get(dt) ?? new Set()).add(hr));
  }
  const whole = [...byDay].filter(([, hrs]) => hrs.size === 24).map(([dt]) => dt);
  const parts = [...byDay]
    .filter(([, hrs]) => hrs.size < 24)
    .map(([dt, hrs]) => `(dt = ${literal(dt)} AND hr IN (${[...hrs].sort().map(literal).join(', ')}))`);
  if (whole.length > 0) parts.unshift(`dt IN (${whole.sort().map(literal).join(', ')})`);
  return parts.length === 0 ? 'false' : `(${parts.join(' OR ')})`;
}

/** Glue database and table names: Glue stores them in lowercase; `"` never occurs, so quoting is enough. */
function athenaName(name: string): string {
  if (!/^[a-z0-9_-]{1,255}$/.test(name)) {
    throw new SqlCompileError(`Glue database and table names must be lowercase letters, digits, _ or -, received ${JSON.stringify(name)}`);
  }
  return `"${name}"`;
}

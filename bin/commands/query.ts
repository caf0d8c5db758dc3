/**
 * `tandem query <view>`: GET /views/{name}, as a table or one JSON document.
 * `tandem views`: GET /views.
 */
import { type Command, Option } from 'commander';
import type { QueryAnswer, ViewInfo, ViewsAnswer } from '../../functions/contract/api.ts';
import { MAX_LIMIT } from '../../functions/core/query.ts';
import { grainRank, iso, parseTime, QUERY_GRAINS, type QueryGrain } from '../../functions/core/time.ts';
import {
  action,
  cell,
  clientFor,
  narrate,
  printJson,
  renderTable,
  type TargetFlags,
  UsageError,
  usageExits,
  withTarget,
} from '../output.ts';

interface QueryFlags extends TargetFlags {
  readonly from?: string;
  readonly to?: string;
  readonly grain?: string;
  readonly groupBy?: string;
  readonly totals?: boolean;
  readonly where: string[];
  readonly orderBy?: string;
  readonly limit?: string;
  readonly json?: boolean;
}

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A query time as the API takes it (ISO-8601). Besides ISO-8601 and epoch
 * milliseconds, accepts `now` and times relative to it: `now-15m`, `-2h`, `-7d`.
 */
export function parseWhen(flag: string, text: string, now = Date.now()): string {
  const t = text.trim();
  const rel = /^(now)?(?:([+-])(\d+)([smhd]))?$/.exec(t);
  if (rel && (rel[1] || rel[2])) {
    const [, , sign, n, unit] = rel;
    return iso(now + (sign ? (sign === '-' ? -1 : 1) * Number(n) * UNIT_MS[unit!]! : 0));
  }
  try {
    return iso(parseTime(text));
  } catch (e) {
    throw new UsageError(`${flag} ${(e as Error).message} (or now, now-15m, -2h)`);
  }
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/** The API's range when `from` is not given (core/query.ts DEFAULT_RANGE_MS): up to it, the view's own grain as before. */
const API_DEFAULT_RANGE_MS = 24 * HOUR_MS;

/**
 * The grain `tandem query` asks for when `--grain` is not given: `day` beyond 7 days, `hour`
 * beyond 24 hours (the API's default range, so a query without `--from` is as before), else
 * undefined (the API's default, the view's grain); never finer than the view's grain. A
 * 90-day minute-grain answer would be refused as too large anyway.
 */
export function defaultGrain(rangeMs: number, viewGrain: QueryGrain | undefined): QueryGrain | undefined {
  const wanted: QueryGrain | undefined = rangeMs > 7 * DAY_MS ? 'day' : rangeMs > API_DEFAULT_RANGE_MS ? 'hour' : undefined;
  if (wanted === undefined || viewGrain === undefined) return wanted;
  return grainRank(viewGrain) > grainRank(wanted) ? viewGrain : wanted;
}

/** The range of the query parameters, ms, as the API will take it (`to` defaulting to now, `from` to 24 h before `to`). */
export function rangeOf(params: Readonly<Record<string, string | undefined>>, now = Date.now()): number {
  const to = params.to === undefined ? now : Date.parse(params.to);
  return params.from === undefined ? API_DEFAULT_RANGE_MS : to - Date.parse(params.from);
}

/** `--where dim=value`, repeatable: collected into a list. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerQuery(program: Command): void {
  const cmd = program
    .command('query')
    .description('query a view: the batch view merged with the speed deltas it does not cover (GET /views/{name})')
    .argument('<view>', 'view name (see `tandem views`)')
    .option('--from <time>', 'start, inclusive: ISO-8601, epoch ms, now-<n>[smhd] or -<n>[smhd], e.g. -90d (default: 24 h before --to)')
    .option('--to <time>', "end, exclusive (default: the end of the view's current bucket)")
    .addOption(
      new Option(
        '--grain <grain>',
        "bucket size: the view's grain or coarser (default: day beyond 7 days, hour beyond 24 hours, else the view's grain)",
      ).choices(QUERY_GRAINS),
    )
    .option('--group-by <dims>', "comma list of dimensions to group by (default: all of the view's)")
    .option('--totals', 'no grouping: one row per bucket (same as --group-by "")')
    .option('--where <dim=value>', 'keep rows whose dimension equals value (repeatable)', collect, [])
    .option('--order-by <metric>', 'order the rows of each bucket by a metric, ascending; -<metric>: descending (ties by dimension values)')
    .option('--limit <n>', `keep the first n rows of each bucket (with --grain all: overall), 1 to ${MAX_LIMIT}`)
    .option('--json', 'print the API answer as one JSON document')
    .addHelpText(
      'after',
      `
Examples:
  tandem query events_by_type --from -1h
  tandem query revenue_by_country --grain day --from 2025-01-01 --to 2025-02-01 --where country=DE
  tandem query page_views --group-by page --grain all --json
  tandem query page_views --group-by page --grain all --order-by -views --limit 10 --from -90d
  tandem query page_views --from -30d --totals`,
    );
  withTarget(cmd);
  usageExits(cmd);
  cmd.action(action(async (view: string, flags: QueryFlags) => query(view, flags)));

  const views = program
    .command('views')
    .description('list the declared views (GET /views)')
    .option('--json', 'print the API answer as one JSON document');
  withTarget(views);
  usageExits(views);
  views.action(action(async (flags: TargetFlags & { json?: boolean }) => listViews(flags)));
}

/** The query parameters of the flags, validated here so usage errors exit 2 before any request. */
export function queryParams(flags: QueryFlags, now = Date.now()): Record<string, string | undefined> {
  if (flags.totals && flags.groupBy !== undefined) throw new UsageError('give --totals or --group-by, not both');
  const params: Record<string, string | undefined> = {
    from: flags.from === undefined ? undefined : parseWhen('--from', flags.from, now),
    to: flags.to === undefined ? undefined : parseWhen('--to', flags.to, now),
    grain: flags.grain,
    groupBy: flags.totals ? '' : flags.groupBy,
  };
  if (flags.orderBy !== undefined) {
    if (!/^-?[A-Za-z_]\w*$/.test(flags.orderBy))
      throw new UsageError(`--order-by must be a metric name or -<metric>, received "${flags.orderBy}"`);
    params.orderBy = flags.orderBy;
  }
  if (flags.limit !== undefined) {
    const n = /^\d{1,6}$/.test(flags.limit) ? Number(flags.limit) : Number.NaN;
    if (!(n >= 1 && n <= MAX_LIMIT))
      throw new UsageError(`--limit must be a whole number from 1 to ${MAX_LIMIT}, received "${flags.limit}"`);
    params.limit = String(n);
  }
  const flagOf: Record<string, string> = { groupBy: 'group-by', orderBy: 'order-by' };
  for (const w of flags.where) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new UsageError(`--where must be dimension=value, received "${w}"`);
    const dim = w.slice(0, eq);
    if (['from', 'to', 'grain', 'groupBy', 'orderBy', 'limit'].includes(dim))
      throw new UsageError(`--where cannot filter "${dim}": use --${flagOf[dim] ?? dim}`);
    params[dim] = w.slice(eq + 1);
  }
  return params;
}

/**
 * The grain for a long range when `--grain` is not given (defaultGrain). Between 24 hours and
 * 7 days the choice (hour) depends on the view's grain, read from GET /views; an unknown view
 * is left for the query to refuse.
 */
async function withDefaultGrain(
  client: ReturnType<typeof clientFor>,
  view: string,
  params: Record<string, string | undefined>,
  now = Date.now(),
): Promise<QueryGrain | undefined> {
  if (params.grain !== undefined) return undefined;
  const range = rangeOf(params, now);
  let grain = defaultGrain(range, undefined);
  if (grain === 'hour') {
    const { body } = await client.get<ViewsAnswer>('/views');
    const info = body.views.find((v) => v.name === view);
    grain = info ? defaultGrain(range, info.grain) : undefined;
  }
  if (grain !== undefined) params.grain = grain;
  return grain;
}

async function query(view: string, flags: QueryFlags): Promise<void> {
  const params = queryParams(flags);
  const client = clientFor(flags);
  const chosen = await withDefaultGrain(client, view, params);
  const { body } = await client.get<QueryAnswer>(`/views/${encodeURIComponent(view)}`, { query: params });
  if (flags.json) {
    printJson(body);
    return;
  }
  const batch = body.batch
    ? `batch version ${body.batch.version}, cutoff ${body.batch.cutoff}`
    : 'no batch published yet: speed layer only';
  const grain = chosen === undefined ? body.grain : `${body.grain} (the default for this range; --grain to choose)`;
  const order = flags.orderBy === undefined ? '' : `; ordered by ${flags.orderBy} within each bucket`;
  const limit = flags.limit === undefined ? '' : `, at most ${params.limit} per bucket`;
  narrate(
    `${body.view}: ${body.from} .. ${body.to} by ${grain}${order}${limit}; ${batch}; ` +
      `${body.rows.length} row${body.rows.length === 1 ? '' : 's'}`,
  );
  if (body.rows.length === 0) return;
  const columns: string[] = [];
  for (const r of body.rows) for (const k of Object.keys(r)) if (!columns.includes(k)) columns.push(k);
  const align = columns.map((c) => (body.rows.some((r) => typeof r[c] === 'number') ? 'right' : 'left') as 'left' | 'right');
  process.stdout.write(
    `${renderTable(
      columns,
      body.rows.map((r) => columns.map((c) => r[c] ?? null)),
      align,
    )}\n`,
  );
}

async function listViews(flags: TargetFlags & { json?: boolean }): Promise<void> {
  const { body } = await clientFor(flags).get<ViewsAnswer>('/views');
  if (flags.json) {
    printJson(body);
    return;
  }
  const list = body.views;
  const metric = ([name, m]: [string, ViewInfo['metrics'][string]]) => `${name}: ${m.fn}(${'field' in m ? m.field : ''})`;
  const filter = (f: ViewInfo['filter']) =>
    f
      ? Object.entries(f)
          .map(([k, v]) => `${k} = ${cell(v)}`)
          .join(', ')
      : '';
  process.stdout.write(
    `${renderTable(
      ['view', 'grain', 'dimensions', 'metrics', 'filter'],
      list.map((v) => [v.name, v.grain, v.dimensions.join(', '), Object.entries(v.metrics).map(metric).join('\n'), filter(v.filter)]),
    )}\n`,
  );
}

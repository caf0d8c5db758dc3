/**
 * `tandem query <view>`: GET /views/{name}, as a table or one JSON document.
 * `tandem views`: GET /views.
 */
import { type Command, Option } from 'commander';
import type { QueryAnswer, ViewInfo, ViewsAnswer } from '../../functions/contract/api.ts';
import { iso, parseTime, QUERY_GRAINS } from '../../functions/core/time.ts';
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

/** `--where dim=value`, repeatable: collected into a list. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function registerQuery(program: Command): void {
  const cmd = program
    .command('query')
    .description('query a view: the batch view merged with the speed deltas it does not cover (GET /views/{name})')
    .argument('<view>', 'view name (see `tandem views`)')
    .option('--from <time>', 'start, inclusive: ISO-8601, epoch ms, now-<n>[smhd] or -<n>[smhd] (default: 24 h before --to)')
    .option('--to <time>', "end, exclusive (default: the end of the view's current bucket)")
    .addOption(new Option('--grain <grain>', "bucket size: the view's grain or coarser").choices(QUERY_GRAINS))
    .option('--group-by <dims>', "comma list of dimensions to group by (default: all of the view's)")
    .option('--totals', 'no grouping: one row per bucket (same as --group-by "")')
    .option('--where <dim=value>', 'keep rows whose dimension equals value (repeatable)', collect, [])
    .option('--json', 'print the API answer as one JSON document')
    .addHelpText(
      'after',
      `
Examples:
  tandem query events_by_type --from -1h
  tandem query revenue_by_country --grain day --from 2025-01-01 --to 2025-02-01 --where country=DE
  tandem query page_views --group-by page --grain all --json`,
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
  for (const w of flags.where) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new UsageError(`--where must be dimension=value, received "${w}"`);
    const dim = w.slice(0, eq);
    if (['from', 'to', 'grain', 'groupBy'].includes(dim))
      throw new UsageError(`--where cannot filter "${dim}": use --${dim === 'groupBy' ? 'group-by' : dim}`);
    params[dim] = w.slice(eq + 1);
  }
  return params;
}

async function query(view: string, flags: QueryFlags): Promise<void> {
  const params = queryParams(flags);
  const client = clientFor(flags);
  const { body } = await client.get<QueryAnswer>(`/views/${encodeURIComponent(view)}`, { query: params });
  if (flags.json) {
    printJson(body);
    return;
  }
  const batch = body.batch
    ? `batch version ${body.batch.version}, cutoff ${body.batch.cutoff}`
    : 'no batch published yet: speed layer only';
  narrate(
    `${body.view}: ${body.from} .. ${body.to} by ${body.grain}; ${batch}; ${body.rows.length} row${body.rows.length === 1 ? '' : 's'}`,
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

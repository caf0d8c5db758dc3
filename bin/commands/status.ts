/** `tandem status`: GET /status, both layers at a glance. */
import type { Command } from 'commander';
import { action, cell, clientFor, printJson, renderTable, type TargetFlags, usageExits, withTarget } from '../output.ts';

/** The parts of GET /status this command shows (functions/api/status.ts); other fields pass through --json. */
export interface StatusAnswer {
  readonly now?: string;
  readonly batch?: {
    readonly version: number;
    readonly cutoff: string;
    readonly lagSeconds?: number;
    readonly publishedAt?: string;
  } | null;
  readonly lastRun?: {
    readonly id?: string;
    readonly state?: string;
    readonly stage?: string;
    readonly startedAt?: string;
    readonly finishedAt?: string;
    readonly durationMs?: number;
    readonly version?: number;
    readonly cutoff?: string;
    readonly error?: string;
    readonly views?: Readonly<Record<string, { readonly rows?: number; readonly sqlMs?: number; readonly loadMs?: number }>>;
  } | null;
  readonly speed?: { readonly shards?: readonly ShardProgress[] };
  readonly archive?: { readonly shards?: readonly ShardProgress[] };
  readonly windowSeconds?: number;
  readonly dedupHorizonSeconds?: number;
  readonly poison?: { readonly count?: number };
}

interface ShardProgress {
  readonly shard: string;
  readonly arrival?: string;
  readonly seq?: string;
  readonly records?: number;
  readonly lagMs?: number;
  readonly millisBehindLatest?: number;
  readonly updatedAt?: string;
}

/** "3 min 4 s" style age of a duration in seconds. */
export function age(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.round((seconds % 86400) / 3600)} h`;
}

export function registerStatus(program: Command): void {
  const cmd = program
    .command('status')
    .description('batch version, cutoff and its age, the last batch run, speed lag and archive checkpoints per shard (GET /status)')
    .option('--json', 'print the API answer as one JSON document')
    .addHelpText('after', '\nExamples:\n  tandem status\n  tandem status --json | jq .batch');
  withTarget(cmd);
  usageExits(cmd);
  cmd.action(
    action(async (flags: TargetFlags & { json?: boolean }) => {
      const { body } = await clientFor(flags).get<StatusAnswer>('/status');
      if (flags.json) printJson(body);
      else process.stdout.write(renderStatus(body));
    }),
  );
}

/** The human form of GET /status. */
export function renderStatus(s: StatusAnswer): string {
  const out: string[] = [];
  const now = s.now ? Date.parse(s.now) : Date.now();
  if (s.batch) {
    const lag = s.batch.lagSeconds ?? (now - Date.parse(s.batch.cutoff)) / 1000;
    out.push(`batch:    version ${s.batch.version}, cutoff ${s.batch.cutoff} (${age(lag)} ago)`);
  } else {
    out.push('batch:    nothing published yet (queries are served by the speed layer alone)');
  }
  const r = s.lastRun;
  if (r) {
    const took = r.durationMs !== undefined ? `, took ${(r.durationMs / 1000).toFixed(1)} s` : '';
    const when = r.startedAt ? `, started ${r.startedAt}` : '';
    out.push(
      `last run: ${r.id ?? '?'} ${r.state ?? '?'}${r.state === 'RUNNING' && r.stage ? ` (${r.stage})` : ''}${when}${took}${r.error ? `: ${r.error}` : ''}`,
    );
    const views = Object.entries(r.views ?? {});
    if (views.length > 0) {
      out.push(
        renderTable(
          ['view', 'rows', 'sql ms', 'load ms'],
          views.map(([name, v]) => [name, v.rows, v.sqlMs, v.loadMs]),
          ['left', 'right', 'right', 'right'],
        ),
      );
    }
  } else {
    out.push('last run: none');
  }
  out.push(`poison:   ${s.poison?.count ?? 0} record(s) sent to the on-failure destination`);
  if (s.windowSeconds !== undefined) out.push(`window:   ${s.windowSeconds} s arrival windows`);
  const speed = s.speed?.shards ?? [];
  const archive = s.archive?.shards ?? [];
  const shards = [...new Set([...speed.map((x) => x.shard), ...archive.map((x) => x.shard)])].sort();
  if (shards.length > 0) {
    out.push(
      renderTable(
        ['shard', 'speed: through', 'speed lag', 'behind latest', 'archived through', 'archived records'],
        shards.map((id) => {
          const sp = speed.find((x) => x.shard === id);
          const ar = archive.find((x) => x.shard === id);
          return [
            id,
            sp?.arrival,
            sp?.lagMs !== undefined ? age(sp.lagMs / 1000) : undefined,
            sp?.millisBehindLatest !== undefined ? `${sp.millisBehindLatest} ms` : undefined,
            ar?.arrival,
            ar?.records,
          ].map(cell);
        }),
      ),
    );
  } else {
    out.push('shards:   no speed or archive progress recorded yet');
  }
  return `${out.join('\n')}\n`;
}

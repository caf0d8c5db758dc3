/** `tandem status`: GET /status, both layers at a glance. */
import type { Command } from 'commander';
import type { StatusAnswer } from '../../functions/contract/api.ts';
import { action, cell, clientFor, printJson, renderTable, type TargetFlags, usageExits, withTarget } from '../output.ts';

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
  if (s.batch) {
    out.push(`batch:    version ${s.batch.version}, cutoff ${s.batch.cutoff} (${age(s.batch.lagSeconds)} ago)`);
  } else {
    out.push('batch:    nothing published yet (queries are served by the speed layer alone)');
  }
  const r = s.lastRun;
  if (r) {
    const took = r.durationMs !== null ? `, took ${(r.durationMs / 1000).toFixed(1)} s` : '';
    const when = r.startedAt ? `, started ${r.startedAt}` : '';
    out.push(`last run: ${r.id} ${r.state}${r.state === 'RUNNING' ? ` (${r.stage})` : ''}${when}${took}${r.error ? `: ${r.error}` : ''}`);
    const views = Object.entries(r.views);
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
  out.push(`poison:   ${s.poison.count} record(s) sent to the on-failure destination`);
  out.push(`window:   ${s.windowSeconds} s arrival windows`);
  const speed = s.speed.shards;
  const archive = s.archive.shards;
  const shards = [...new Set([...speed.map((x) => x.shard), ...archive.map((x) => x.shard)])].sort();
  if (shards.length > 0) {
    out.push(
      renderTable(
        ['shard', 'speed: through', 'speed lag', 'archived through', 'archived records'],
        shards.map((id) => {
          const sp = speed.find((x) => x.shard === id);
          const ar = archive.find((x) => x.shard === id);
          return [id, sp?.arrival, sp?.lagMs !== undefined ? age(sp.lagMs / 1000) : undefined, ar?.arrival, ar?.records].map(cell);
        }),
      ),
    );
  } else {
    out.push('shards:   no speed or archive progress recorded yet');
  }
  return `${out.join('\n')}\n`;
}

/**
 * `tandem batch run [--wait]` (POST /batch/runs, then GET /batch/runs/{id}),
 * `tandem batch rebuild [--view NAME] [--wait]` (POST /batch/runs with
 * `{"rebuild": true}` or `{"view": NAME}`) and `tandem batch rollback <version>`
 * (POST /batch/rollback).
 */
import { SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { PointerAnswer, RunAnswer, StartRunAnswer, StartRunRequest, ViewsAnswer } from '../../functions/contract/api.ts';
import { type ApiClient, sleep } from '../client.ts';
import {
  action,
  clientFor,
  EXIT_FAILURE,
  narrate,
  positiveInt,
  printJson,
  ReportedFailure,
  renderTable,
  type TargetFlags,
  usageExits,
  withTarget,
} from '../output.ts';

/**
 * Where a run is, as a fraction of its work: `plan`, then each view's SQL and
 * load (`views`, one step per view as it completes), then `publish`.
 */
export function progressOf(
  run: Pick<RunAnswer, 'state' | 'stage' | 'views'>,
  viewCount: number,
): { value: number; total: number; step: string } {
  const total = viewCount + 2;
  const done = Object.keys(run.views).length;
  if (FINAL.has(run.state) || run.stage === 'done') return { value: total, total, step: 'done' };
  switch (run.stage) {
    case 'plan':
      return { value: 0, total, step: 'plan' };
    case 'publish':
      return { value: total - 1, total, step: 'publish' };
    default:
      return { value: 1 + Math.min(done, viewCount), total, step: `SQL + load (${done}/${viewCount} views)` };
  }
}

const FINAL = new Set<RunAnswer['state']>(['SUCCEEDED', 'FAILED', 'SKIPPED']);

export function registerBatch(program: Command): void {
  const batch = program.command('batch').description('run the batch layer now, or roll back to an earlier batch version');
  usageExits(batch);

  const run = batch
    .command('run')
    .description('start a batch run (POST /batch/runs); with --wait, follow it through plan, SQL, load and publish')
    .option('--wait', 'wait for the run to finish, showing its progress; exit 1 if it fails')
    .option('--timeout <seconds>', 'give up waiting after this long', '600')
    .option('--json', 'print the run as one JSON document')
    .addHelpText('after', '\nExamples:\n  tandem batch run\n  tandem batch run --wait --json');
  withTarget(run);
  usageExits(run);
  run.action(action(async (flags: RunFlags) => runBatch(flags, {})));

  const rebuild = batch
    .command('rebuild')
    .description('start a batch run that recomputes every view (or one, with --view) from all history instead of an increment')
    .option('--view <name>', 'rebuild only this view (the others run as an increment)')
    .option('--wait', 'wait for the run to finish, showing its progress; exit 1 if it fails')
    .option('--timeout <seconds>', 'give up waiting after this long', '600')
    .option('--json', 'print the run as one JSON document')
    .addHelpText('after', '\nExamples:\n  tandem batch rebuild --wait\n  tandem batch rebuild --view page_views --wait');
  withTarget(rebuild);
  usageExits(rebuild);
  rebuild.action(
    action(async (flags: RunFlags & { view?: string }) =>
      runBatch(flags, flags.view === undefined ? { rebuild: true } : { view: flags.view }),
    ),
  );

  const rollback = batch
    .command('rollback')
    .description('serve an earlier published batch version again (POST /batch/rollback)')
    .argument('<version>', 'a version still kept (see `tandem status`)')
    .option('--json', 'print the API answer as one JSON document')
    .addHelpText('after', '\nExample:\n  tandem batch rollback 3');
  withTarget(rollback);
  usageExits(rollback);
  rollback.action(
    action(async (version: string, flags: TargetFlags & { json?: boolean }) => {
      const n = positiveInt('<version>', version);
      const { body } = await clientFor(flags).post<PointerAnswer>('/batch/rollback', { version: n });
      if (flags.json) printJson(body);
      else process.stdout.write(`now serving batch version ${body.version}, cutoff ${body.cutoff}\n`);
    }),
  );
}

interface RunFlags extends TargetFlags {
  readonly wait?: boolean;
  readonly timeout: string;
  readonly json?: boolean;
}

async function runBatch(flags: RunFlags, request: StartRunRequest): Promise<void> {
  const timeoutMs = positiveInt('--timeout', flags.timeout) * 1000;
  const client = clientFor(flags);
  const { body: started } = await client.post<StartRunAnswer>('/batch/runs', request);
  const id = started.id;
  if (!flags.wait) {
    if (flags.json) printJson(started);
    else process.stdout.write(`${id}\n`);
    narrate(`batch run ${id} ${started.alreadyRunning ? 'was already running' : 'started'}; follow it with GET /batch/runs/${id}`);
    return;
  }
  narrate(started.alreadyRunning ? `batch run ${id} was already running: following it` : `batch run ${id} started`);
  const done = await follow(client, id, timeoutMs);
  if (flags.json) printJson(done);
  else printRun(id, done);
  if (done.state === 'FAILED' || !FINAL.has(done.state)) throw new ReportedFailure(EXIT_FAILURE);
}

/** Polls a run until it ends, showing its progress: a bar on a terminal, a line per step otherwise. */
async function follow(client: ApiClient, id: string, timeoutMs: number): Promise<RunAnswer> {
  const deadline = Date.now() + timeoutMs;
  const { body: declared } = await client.get<ViewsAnswer>('/views');
  const viewCount = declared.views.length;
  const t0 = Date.now();
  const seconds = () => ((Date.now() - t0) / 1000).toFixed(1);
  const bar = process.stderr.isTTY
    ? new SingleBar({ format: '{bar} {step} | {seconds} s', stream: process.stderr, hideCursor: true, barsize: 24 })
    : undefined;
  bar?.start(viewCount + 2, 0, { step: 'plan', seconds: '0.0' });
  let lastStep: string | undefined;
  const reported = new Set<string>();
  try {
    for (;;) {
      const { body: run } = await client.get<RunAnswer>(`/batch/runs/${encodeURIComponent(id)}`);
      const p = progressOf(run, viewCount);
      if (bar) bar.update(p.value, { step: p.step, seconds: seconds() });
      else {
        // A quick plan can be over by the first poll: say so rather than skip the step.
        if (lastStep === undefined)
          narrate(`${seconds()} s  plan: ${run.stage === 'plan' || run.cutoff === null ? 'choosing the cutoff' : `cutoff ${run.cutoff}`}`);
        for (const [name, v] of Object.entries(run.views)) {
          if (reported.has(name)) continue;
          reported.add(name);
          narrate(`${seconds()} s  ${name}: ${v.rows} rows${modeText(v)} (SQL ${v.sqlMs} ms, load ${v.loadMs} ms)`);
        }
        if (run.stage === 'publish' && lastStep !== 'publish') narrate(`${seconds()} s  publish: flipping the pointer`);
      }
      lastStep = p.step === 'publish' ? 'publish' : run.stage;
      if (FINAL.has(run.state)) return run;
      if (Date.now() > deadline) {
        narrate(`tandem: batch run ${id} still ${run.state} after ${timeoutMs / 1000} s; it goes on in the background`);
        return run;
      }
      await sleep(300);
    }
  } finally {
    bar?.stop();
  }
}

/** `, increment: 120 written` or `, rebuild (declaration changed)`; nothing for a run item without a mode. */
function modeText(v: RunAnswer['views'][string]): string {
  if (v.mode === 'increment') return `, increment: ${v.written ?? v.rows} written`;
  if (v.mode === 'rebuild') return `, rebuild${v.reason ? ` (${v.reason})` : ''}`;
  return '';
}

function printRun(id: string, run: RunAnswer): void {
  const lines = [`batch run ${id}: ${run.state}`];
  if (run.version !== null) lines.push(`version ${run.version}, cutoff ${run.cutoff ?? ''}`);
  if (run.startedAt !== null && run.finishedAt !== null) {
    const ms = new Date(run.finishedAt).getTime() - new Date(run.startedAt).getTime();
    if (Number.isFinite(ms)) lines.push(`took ${(ms / 1000).toFixed(1)} s`);
  }
  if (run.error) lines.push(`error: ${run.error}`);
  if (run.note) lines.push(`note: ${run.note}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const views = Object.entries(run.views);
  if (views.length > 0) {
    process.stdout.write(
      `${renderTable(
        ['view', 'mode', 'rows', 'written', 'sql ms', 'load ms'],
        views.map(([name, v]) => [
          name,
          v.mode === undefined ? '' : v.mode === 'rebuild' && v.reason ? `rebuild (${v.reason})` : v.mode,
          v.rows,
          v.written ?? v.rows,
          v.sqlMs,
          v.loadMs,
        ]),
        ['left', 'left', 'right', 'right', 'right', 'right'],
      )}\n`,
    );
  }
}

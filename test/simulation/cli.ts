/**
 * `npm run test:sim -- --seed N --steps M` replays one seed's schedule;
 * `npm run test:sim -- --seeds 500` runs a campaign of seeds 1..500 and prints
 * the summary table. Narration goes to stderr; the table (or, with --json,
 * one JSON document) to stdout. Exit code 1 when any seed failed.
 */

import { appendFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { describeStep, PROFILES, type ProfileName, scheduleFor } from './schedule.ts';

// Before the handler modules load (they build SDK clients at import): no Node 20 notice, no EMF output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';

const whole = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number >= ${min}, received "${v}"`);
  return n;
};

const program = new Command('test:sim')
  .description('Seeded fault-injection simulation of Tandem on the local cloud (docs/reliability.md)')
  .option('--seed <n>', 'run (replay) this one seed', whole('--seed', 0))
  .option('--seeds <n>', 'run a campaign of this many seeds', whole('--seeds', 1))
  .option('--from <n>', 'first seed of a campaign', whole('--from', 0), 1)
  .option('--steps <m>', 'steps per schedule', whole('--steps', 1), 40)
  .option('--profile <name>', `fault mix: ${Object.keys(PROFILES).join(' | ')}`, 'full')
  .option('--shrink', 'shrink a failing schedule with fast-check (time-boxed)')
  .option('--shrink-minutes <n>', 'time box of the shrinking', whole('--shrink-minutes', 1), 20)
  .option('--fail-fast', 'stop a campaign at its first failure')
  .option('--data-dir <dir>', 'where the emulators keep their data (a temp dir by default)')
  .option('--print-schedule', 'print the schedule of --seed and exit (no emulators)')
  .option('--results <file>', 'append one JSON line per seed to this file (a long campaign can be summarized even if cut short)')
  .option('--verbose', 'log every step')
  .option('--json', 'print the summary as one JSON document')
  .option('--markdown', 'print the summary as Markdown tables (docs/reliability.md)')
  .action(
    async (o: {
      seed?: number;
      seeds?: number;
      from: number;
      steps: number;
      profile: string;
      shrink?: boolean;
      shrinkMinutes: number;
      failFast?: boolean;
      dataDir?: string;
      printSchedule?: boolean;
      verbose?: boolean;
      results?: string;
      json?: boolean;
      markdown?: boolean;
    }) => {
      if (!(o.profile in PROFILES))
        throw new InvalidArgumentError(`--profile must be one of ${Object.keys(PROFILES).join(', ')}, received "${o.profile}"`);
      const profile = o.profile as ProfileName;
      if ((o.seed === undefined) === (o.seeds === undefined))
        program.error('give either --seed <n> (one schedule) or --seeds <n> (a campaign)');
      const log = (line: string) => process.stderr.write(`${line}\n`);
      if (o.printSchedule) {
        if (o.seed === undefined) return program.error('--print-schedule needs --seed');
        for (const [i, s] of scheduleFor(o.seed, o.steps, PROFILES[profile]).entries()) process.stdout.write(`#${i} ${describeStep(s)}\n`);
        return;
      }
      const { runCampaign, shrinkSchedule, summaryMarkdown, summaryTable } = await import('./campaign.ts');
      const { SimCloud } = await import('./harness.ts');
      const seeds = o.seed !== undefined ? [o.seed] : Array.from({ length: o.seeds! }, (_, i) => o.from + i);
      const cloud = await SimCloud.start(o.dataDir);
      let exitCode = 0;
      try {
        const { summary } = await runCampaign(cloud, {
          seeds,
          steps: o.steps,
          profile,
          verbose: o.verbose ?? o.seed !== undefined,
          log,
          failFast: o.failFast ?? false,
          onSeed: (r, done) => {
            if (o.results) appendFileSync(o.results, `${JSON.stringify(r)}\n`);
            if (seeds.length > 1)
              log(
                `[${done}/${seeds.length}] seed ${r.seed}: ${r.failure ? `FAILED (${r.failure.what})` : 'ok'} ` +
                  `in ${(r.ms / 1000).toFixed(1)} s, ${r.queries} queries`,
              );
          },
        });
        if (o.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else if (o.markdown)
          process.stdout.write(
            `${summaryMarkdown(summary, `seeds ${seeds[0]}..${seeds[seeds.length - 1]}, ${o.steps} steps, profile ${profile}`)}\n`,
          );
        else process.stdout.write(`${summaryTable(summary)}\n`);
        for (const n of summary.notes) log(`note: seed ${n.seed}: ${n.note}`);
        if (summary.failures.length > 0) {
          exitCode = 1;
          for (const f of summary.failures) log(`FAILED seed ${f.seed} step #${f.step} (${f.what}): ${f.message.split('\n')[0]}`);
          const first = summary.failures[0]!;
          if (o.shrink) {
            log(`shrinking seed ${first.seed} (${first.what}), up to ${o.shrinkMinutes} min...`);
            const shrunk = await shrinkSchedule(cloud, first.seed, scheduleFor(first.seed, o.steps, PROFILES[profile]), first.what, {
              profile,
              timeLimitMs: o.shrinkMinutes * 60_000,
              log,
            });
            if (shrunk) {
              log(`minimal schedule found after ${shrunk.tries} tries (${shrunk.steps.length} steps):`);
              for (const [i, s] of shrunk.steps.entries()) log(`  #${i} ${describeStep(s)}  ${JSON.stringify(s)}`);
            } else log('the failure did not reproduce while shrinking (timing-dependent)');
          }
        }
      } finally {
        await cloud.stop();
      }
      process.exitCode = exitCode;
    },
  );

await program.parseAsync(process.argv);

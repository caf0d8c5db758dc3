/**
 * A campaign: many seeds on one set of emulators, a summary table (seeds,
 * steps, faults of each kind injected, queries checked, failures), and the
 * shrinking of a failing schedule with fast-check.
 */
import Table from 'cli-table3';
import fc from 'fast-check';
import { runSeed, type SeedResult } from './driver.ts';
import type { SimCloud } from './harness.ts';
import { PROFILES, type ProfileName, type Step, scheduleFor, shrinkable } from './schedule.ts';

export interface CampaignOptions {
  readonly seeds: readonly number[];
  readonly steps: number;
  readonly profile: ProfileName;
  readonly verbose?: boolean;
  /** Narration (stderr in the CLI). */
  readonly log: (line: string) => void;
  /** Called after each seed (progress). */
  readonly onSeed?: (r: SeedResult, done: number) => void;
  /** Stop at the first failure. */
  readonly failFast?: boolean;
}

export interface CampaignSummary {
  readonly seeds: number;
  readonly steps: number;
  readonly ms: number;
  readonly queries: number;
  readonly checks: number;
  readonly faults: Record<string, number>;
  readonly batches: Record<string, number>;
  readonly events: Record<string, number>;
  readonly failures: { seed: number; step: number; what: string; message: string }[];
  readonly notes: { seed: number; note: string }[];
}

export function summarize(results: readonly SeedResult[], ms: number): CampaignSummary {
  const faults: Record<string, number> = {};
  const batches: Record<string, number> = {};
  const events: Record<string, number> = {};
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  for (const r of results) {
    add(faults, r.faults);
    add(batches, r.batches);
    add(events, r.events);
  }
  return {
    seeds: results.length,
    steps: results.reduce((a, r) => a + r.steps, 0),
    ms,
    queries: results.reduce((a, r) => a + r.queries, 0),
    checks: results.reduce((a, r) => a + r.checks, 0),
    faults,
    batches,
    events,
    failures: results.flatMap((r) => (r.failure ? [{ seed: r.seed, ...r.failure }] : [])),
    notes: results.flatMap((r) => r.notes.map((note) => ({ seed: r.seed, note }))),
  };
}

/** Runs the seeds one after the other on `cloud`. */
export async function runCampaign(cloud: SimCloud, o: CampaignOptions): Promise<{ summary: CampaignSummary; results: SeedResult[] }> {
  const t0 = Date.now();
  const results: SeedResult[] = [];
  for (const seed of o.seeds) {
    const steps = scheduleFor(seed, o.steps, PROFILES[o.profile]);
    const r = await runSeed(cloud, seed, steps, { log: o.log, verbose: o.verbose ?? false });
    const { log: lines, ...result } = r;
    results.push(result);
    if (r.failure && !o.verbose) for (const line of lines) o.log(line);
    if (r.failure)
      o.log(
        `seed ${seed} FAILED at step #${r.failure.step} (${r.failure.what}); ` +
          `replay: npm run test:sim -- --seed ${seed} --steps ${o.steps} --profile ${o.profile}`,
      );
    o.onSeed?.(result, results.length);
    if (r.failure && o.failFast) break;
  }
  return { summary: summarize(results, Date.now() - t0), results };
}

/** The summary as a table (plain text). */
export function summaryTable(s: CampaignSummary): string {
  const t = new Table({ head: ['what', 'count'], style: { head: [], border: [] } });
  t.push(
    ['seeds', s.seeds],
    ['steps', s.steps],
    ['queries checked', s.queries],
    ['checks passed or failed', s.checks],
    ['failures', s.failures.length],
    ['minutes', (s.ms / 60_000).toFixed(1)],
  );
  for (const [k, v] of Object.entries(s.events).sort()) t.push([`events ${k}`, v]);
  for (const [k, v] of Object.entries(s.batches).sort()) t.push([`batch runs ${k}`, v]);
  for (const [k, v] of Object.entries(s.faults).sort()) t.push([`fault ${k}`, v]);
  return t.toString();
}

/**
 * Shrinks a failing schedule: fast-check drops steps and simplifies values,
 * keeping only schedules that fail with the same check. Each try runs a whole
 * schedule on the real emulators, so the search is time-boxed.
 */
export async function shrinkSchedule(
  cloud: SimCloud,
  seed: number,
  steps: Step[],
  what: string,
  o: { profile: ProfileName; timeLimitMs: number; log: (line: string) => void },
): Promise<{ steps: Step[]; tries: number } | undefined> {
  let tries = 0;
  const out = await fc.check(
    fc.asyncProperty(shrinkable(steps.length, PROFILES[o.profile]), async (candidate) => {
      tries++;
      const r = await runSeed(cloud, seed, candidate);
      o.log(`shrink try ${tries}: ${candidate.length} steps -> ${r.failure ? `fails (${r.failure.what})` : 'passes'}`);
      return r.failure?.what !== what;
    }),
    { seed, numRuns: 1, examples: [[steps]], interruptAfterTimeLimit: o.timeLimitMs, markInterruptAsFailure: false },
  );
  if (!out.failed || !out.counterexample) return undefined;
  return { steps: out.counterexample[0] ?? [], tries };
}

/** The summary as Markdown (docs/reliability.md): totals, then faults injected by kind. */
export function summaryMarkdown(s: CampaignSummary, title: string): string {
  const rows = (pairs: [string, number | string][]) =>
    pairs.map(([k, v]) => `| ${k} | ${typeof v === 'number' ? v.toLocaleString('en-US') : v} |`).join('\n');
  const sorted = (o: Record<string, number>) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1));
  return [
    `**${title}**`,
    '',
    '| | |',
    '|---|---:|',
    rows([
      ['seeds', s.seeds],
      ['steps', s.steps],
      ['queries checked', s.queries],
      ['checks', s.checks],
      ['failures', s.failures.length],
      ['duration', `${(s.ms / 60_000).toFixed(0)} min`],
      ...sorted(s.events).map(([k, v]): [string, number] => [`events ${k}`, v]),
      ...sorted(s.batches).map(([k, v]): [string, number] => [`batch runs ${k}`, v]),
    ]),
    '',
    '| fault injected | count |',
    '|---|---:|',
    rows(sorted(s.faults)),
  ].join('\n');
}

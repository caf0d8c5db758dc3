/**
 * Runs one schedule against a World and checks Tandem after every query.
 *
 * The driver is the orchestration: each step of the schedule is an action
 * (actions.ts) and, where the step asks for it, checks (checks.ts) of
 * Tandem's answers against the oracle, the client's own ledger (ledger.ts).
 * The state both share (the world, the ledger, the seeded draws and the
 * tallies of the result) is a SeedState (state.ts).
 *
 * Before every query the driver waits until both event source mappings have
 * applied everything the stream holds (World.idle): the answer is compared
 * with the truth of all acknowledged events, not with "what has been applied".
 * At the end of a schedule, with the faults off: a batch run must publish a
 * cutoff past every arrival, the same checks run on every view, and the raw
 * archive must hold every acknowledged id and no poison record.
 */

import { describeError } from '../../functions/batch/pipeline.ts';
import { rng } from '../support/batch.ts';
import { Actions } from './actions.ts';
import { CheckFailure, Checks } from './checks.ts';
import { diagnose } from './diagnose.ts';
import { type Logger, SIM_SETTINGS, type SimCloud, SimError, World } from './harness.ts';
import { describeStep, type Step } from './schedule.ts';
import { type EventStats, SeedState, sleep } from './state.ts';

export interface SeedResult {
  readonly seed: number;
  readonly steps: number;
  readonly ms: number;
  /** Faults injected (that fired), by kind. */
  readonly faults: Record<string, number>;
  readonly queries: number;
  readonly checks: number;
  readonly batches: Record<string, number>;
  readonly events: EventStats;
  readonly failure?: { readonly step: number; readonly what: string; readonly message: string };
  readonly notes: readonly string[];
}

export interface RunOptions {
  readonly log?: Logger;
  /** Log every step (else only a failing seed's log is printed by the caller). */
  readonly verbose?: boolean;
}

/** Runs one schedule on a fresh World; never throws (a failure is in the result). */
export async function runSeed(
  cloud: SimCloud,
  seed: number,
  steps: readonly Step[],
  opts: RunOptions = {},
): Promise<SeedResult & { log: string[] }> {
  const lines: string[] = [];
  const log = (line: string) => {
    lines.push(line);
    if (opts.verbose) opts.log?.(line);
  };
  const t0 = Date.now();
  const r = rng(seed ^ 0x5eed);
  const choose = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const world = new World(cloud, {
    seed,
    shards: choose([1, 2, 2, 3]),
    speedBatchSize: choose([3, 10, 50, 100]),
    archiveBatchSize: choose([7, 100, 1000]),
    log,
  });
  log(
    `seed ${seed}: ${steps.length} steps, ${world.o.shards} shard(s), speed batch ${world.o.speedBatchSize}, ` +
      `archive batch ${world.o.archiveBatchSize}, prefix ${world.prefix}`,
  );
  const d = new Driver(world, seed, log);
  const tally = d.s;
  let failure: SeedResult['failure'];
  let stepIndex = -1;
  try {
    await cloud.ensureUp();
    await world.start();
    for (stepIndex = 0; stepIndex < steps.length; stepIndex++) {
      const s = steps[stepIndex]!;
      const t = Date.now();
      await d.step(s);
      log(`#${stepIndex} ${describeStep(s)} (${Date.now() - t} ms)`);
    }
    stepIndex = steps.length;
    log(`#${stepIndex} final checks`);
    await d.final();
  } catch (e) {
    const what = e instanceof CheckFailure ? e.check : e instanceof SimError ? 'harness' : 'error';
    failure = { step: stepIndex, what, message: e instanceof Error ? `${e.message}${what === 'error' ? `\n${e.stack}` : ''}` : String(e) };
    log(`FAILED at step #${stepIndex} (${what}): ${failure.message}`);
    log(`mapping stats: ${JSON.stringify(world.stats())}`);
    for (const w of world.warnings.slice(-40)) log(`  warn ${w}`);
    if (e instanceof CheckFailure) {
      try {
        for (const line of await diagnose(world, [...tally.ledger.acked.keys()])) log(`  diag ${line}`);
      } catch (err) {
        log(`  diagnosis failed: ${describeError(err)}`);
      }
    }
  } finally {
    await world.close().catch((e) => log(`close failed: ${describeError(e)}`));
  }
  return {
    seed,
    steps: steps.length,
    ms: Date.now() - t0,
    faults: tally.faults(),
    queries: tally.queries,
    checks: tally.checks,
    batches: tally.batches,
    events: tally.eventStats(),
    notes: tally.notes,
    ...(failure ? { failure } : {}),
    log: lines,
  };
}

class Driver {
  readonly s: SeedState;
  private readonly act: Actions;
  private readonly check: Checks;

  constructor(world: World, seed: number, log: Logger) {
    this.s = new SeedState(world, seed, log);
    this.check = new Checks(this.s);
    this.act = new Actions(this.s, this.check);
  }

  async step(s: Step): Promise<void> {
    const act = this.act;
    switch (s.kind) {
      case 'send':
        return act.send(s.shape, s.events, s.fault);
      case 'poison':
        return act.poison(s.variant, s.count);
      case 'aggregated':
        return act.aggregated(s);
      case 'writeFault':
        return act.armWrite(s.consumer, s.fault);
      case 'deliveryFault':
        return act.armDelivery(s.consumer, s.fault);
      case 'batch':
        return act.batch(s.via, s.fault);
      case 'concurrentBatch':
        return act.concurrentBatch();
      case 'rollback':
        return act.rollback(s.back);
      case 'restartWorkers':
        return act.restartWorkers();
      case 'restartCloud':
        await act.restartCloud(s.hard);
        // The stream must still hold every acknowledged event, even after a SIGKILL at any moment.
        return this.check.streamKeptAcknowledged();
      case 'reshard':
        return act.reshard(s.how, s.pick);
      case 'query':
        await this.s.world.idle();
        return this.check.afterQuery(s.q);
      case 'queryDuringBatch':
        return act.queryDuringBatch(s.q, s.hold);
      case 'burst':
        return act.burst(s.requests, s.perRequest, s.copies);
      case 'pause':
        return sleep(s.ms);
      case 'sabotage':
        return act.sabotage(s.what);
    }
  }

  /** The end of a schedule: the faults off, then every check, a batch run that covers every arrival, every view. */
  async final(): Promise<void> {
    const w = this.s.world;
    await this.act.faultsOff();
    await w.idle();
    await this.check.totals();
    await this.check.poison();
    // A batch with the faults off must cover every arrival: wait out the window and margin, then run.
    const windowMs = SIM_SETTINGS.windowSeconds * 1000;
    const needCutoff = Math.floor(w.lastPutAt / windowMs) * windowMs + windowMs;
    const run = await this.act.batchUntilCovered(needCutoff);
    await this.check.finalBatch(needCutoff, run);
    await this.check.everyView();
    await this.check.totals();
    await this.check.poison();
    await this.check.archive();
  }
}

/**
 * What one seed's actions and checks share: the world, the client's ledger,
 * the seeded draws of the driver (one generator, drawn from in schedule
 * order: a replay must draw the same numbers) and the tallies of the result.
 */

import { rng } from '../support/batch.ts';
import type { Logger, World } from './harness.ts';
import { Ledger } from './ledger.ts';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type EventStats = { sent: number; acknowledged: number; rejected: number; late: number; retried: number; poison: number };

export class SeedState {
  readonly ledger = new Ledger();
  readonly random: () => number;
  queries = 0;
  checks = 0;
  readonly batches: Record<string, number> = { succeeded: 0, skipped: 0, failed: 0, crashed: 0, refused: 0 };
  /** Things worth a look that are not failures (e.g. a batch run that failed on its own). */
  readonly notes: string[] = [];
  rejectedEvents = 0;
  lateEvents = 0;
  retriedEvents = 0;
  private readonly counts: Record<string, number> = {};
  private n = 0;

  constructor(
    readonly world: World,
    readonly seed: number,
    readonly log: Logger,
  ) {
    this.random = rng(seed * 7919 + 1);
  }

  /** A fresh id of this seed: `e` for a valid event, `bad` for one ingest rejects, `p` for a poison record. */
  nextId(tag: 'e' | 'bad' | 'p'): string {
    return `s${this.seed}-${tag}${this.n++}`;
  }

  count(kind: string, by = 1): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + by;
  }

  /** Faults and other actions, by kind: the driver's counts and the fired counters of the world's fault seams. */
  faults(): Record<string, number> {
    const w = this.world;
    const out: Record<string, number> = { ...this.counts };
    const add = (prefix: string, fired: Record<string, number>) => {
      for (const [k, v] of Object.entries(fired)) if (v > 0) out[`${prefix}.${k}`] = (out[`${prefix}.${k}`] ?? 0) + v;
    };
    add('putRecords', w.ingest.fired);
    add('speed.write', w.speedSeam.fired);
    add('archive.write', w.archiveSeam.fired);
    add('speed.delivery', w.speedHook.fired);
    add('archive.delivery', w.archiveHook.fired);
    for (const [stage, v] of Object.entries(w.batch.fired)) if (v > 0) out[`batch.${stage}`] = (out[`batch.${stage}`] ?? 0) + v;
    return out;
  }

  eventStats(): EventStats {
    return {
      sent: this.ledger.sent.length,
      acknowledged: this.ledger.acked.size,
      rejected: this.rejectedEvents,
      late: this.lateEvents,
      retried: this.retriedEvents,
      poison: this.ledger.poison.length,
    };
  }
}

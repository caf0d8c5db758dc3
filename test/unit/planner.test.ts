/**
 * The pure cutoff planner (invariant 4, docs/design.md): a lagging shard holds C back, an idle
 * one does not, C is window-aligned and never moves back, and — the property —
 * C never passes a record the archive has not written, for random archive
 * progress per shard.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ArchiveProgress, computeCutoff } from '../../functions/batch/planner.ts';

const settings = { windowSeconds: 60, cutoffMarginSeconds: 5 };
const NOW = Date.UTC(2030, 0, 1, 12, 0, 30, 250);
const seq = (n: number) => String(n).padStart(64, '0');

describe('computeCutoff', () => {
  it('with every shard idle, cuts at now less the margin, floored to a window', () => {
    const shards: ArchiveProgress[] = [
      { shardId: 'a', closed: false, checkpoint: { arrival: NOW - 86_400_000, seq: seq(5) }, probe: { kind: 'empty' } },
      { shardId: 'b', closed: false, probe: { kind: 'empty' } },
    ];
    const plan = computeCutoff({ shards, now: NOW, settings, published: null });
    expect(plan.cutoff).toBe(Date.UTC(2030, 0, 1, 12, 0, 0));
    expect(plan.advanced).toBe(true);
    expect(plan.limitedBy).toBeUndefined();
    // An old checkpoint with nothing past it is idle, not lagging.
    expect(plan.shards.map((s) => s.state)).toEqual(['idle', 'idle']);
  });

  it('a lagging shard holds the cutoff back to its first unarchived record, less the margin', () => {
    const lagArrival = Date.UTC(2030, 0, 1, 11, 42, 3, 0);
    const shards: ArchiveProgress[] = [
      {
        shardId: 'a',
        closed: false,
        checkpoint: { arrival: lagArrival - 1000, seq: seq(5) },
        probe: { kind: 'record', arrival: lagArrival, seq: seq(6) },
      },
      { shardId: 'b', closed: false, probe: { kind: 'empty' } },
    ];
    const plan = computeCutoff({ shards, now: NOW, settings, published: null });
    expect(plan.cutoff).toBe(Date.UTC(2030, 0, 1, 11, 41, 0));
    expect(plan.limitedBy).toBe('a');
  });

  it('a closed parent not yet drained counts like a lagging shard; a drained one does not', () => {
    const lagArrival = Date.UTC(2030, 0, 1, 10, 0, 20);
    const parent: ArchiveProgress = { shardId: 'p', closed: true, probe: { kind: 'record', arrival: lagArrival, seq: seq(1) } };
    const child: ArchiveProgress = { shardId: 'c', closed: false, probe: { kind: 'empty' } };
    expect(computeCutoff({ shards: [parent, child], now: NOW, settings, published: null }).cutoff).toBe(Date.UTC(2030, 0, 1, 10, 0, 0));
    const drained = { ...parent, probe: { kind: 'empty' as const } };
    expect(computeCutoff({ shards: [drained, child], now: NOW, settings, published: null }).cutoff).toBe(Date.UTC(2030, 0, 1, 12, 0, 0));
  });

  it('never moves back from the published cutoff, and says when it has not advanced', () => {
    const published = Date.UTC(2030, 0, 1, 12, 0, 0);
    const lagging: ArchiveProgress[] = [
      { shardId: 'a', closed: false, probe: { kind: 'record', arrival: published - 3_600_000, seq: seq(1) } },
    ];
    const plan = computeCutoff({ shards: lagging, now: NOW, settings, published });
    expect(plan.cutoff).toBe(published);
    expect(plan.candidate).toBeLessThan(published);
    expect(plan.advanced).toBe(false);
    const same = computeCutoff({ shards: [{ shardId: 'a', closed: false, probe: { kind: 'empty' } }], now: NOW, settings, published });
    expect(same.advanced).toBe(false);
    const later = computeCutoff({
      shards: [{ shardId: 'a', closed: false, probe: { kind: 'empty' } }],
      now: NOW + 60_000,
      settings,
      published,
    });
    expect(later.advanced).toBe(true);
    expect(later.cutoff).toBe(published + 60_000);
  });

  it('property: C is aligned, never passes an unarchived record, never goes back, and idle shards never hold it back', () => {
    // Per shard: ascending arrivals; the archive has written a prefix of them. The stream may get
    // new records after the probe (arrival >= probe time), which C must not pass either.
    const shard = fc.record({
      gaps: fc.array(fc.integer({ min: 0, max: 600_000 }), { minLength: 0, maxLength: 12 }),
      archived: fc.nat(),
      start: fc.integer({ min: 0, max: 6 * 3_600_000 }),
    });
    fc.assert(
      fc.property(
        fc.array(shard, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 3600 }).filter((w) => 86_400 % w === 0),
        fc.integer({ min: 0, max: 30 }),
        fc.option(fc.integer({ min: 0, max: 8 * 3_600_000 }), { nil: null }),
        (specs, windowSeconds, margin, publishedOffset) => {
          const base = Date.UTC(2030, 0, 1);
          const now = base + 8 * 3_600_000;
          const s = { windowSeconds, cutoffMarginSeconds: margin };
          const published =
            publishedOffset === null ? null : Math.floor((base + publishedOffset) / (windowSeconds * 1000)) * windowSeconds * 1000;
          const layout = specs.map((sp, i) => {
            let t = base + sp.start;
            const arrivals = sp.gaps.map((g) => (t += g)).filter((a) => a <= now);
            const k = arrivals.length === 0 ? 0 : sp.archived % (arrivals.length + 1);
            return { id: `s${i}`, arrivals, k };
          });
          const shards: ArchiveProgress[] = layout.map((l) => ({
            shardId: l.id,
            closed: false,
            ...(l.k > 0 ? { checkpoint: { arrival: l.arrivals[l.k - 1]!, seq: seq(l.k - 1) } } : {}),
            probe: l.k < l.arrivals.length ? { kind: 'record', arrival: l.arrivals[l.k]!, seq: seq(l.k) } : { kind: 'empty' },
          }));
          const plan = computeCutoff({ shards, now, settings: s, published });
          expect(plan.cutoff % (windowSeconds * 1000)).toBe(0);
          if (published !== null) expect(plan.cutoff).toBeGreaterThanOrEqual(published);
          expect(plan.advanced).toBe(published === null ? plan.cutoff > 0 : plan.cutoff > published);
          // Complete before cut: every unarchived record (and anything arriving after the probe) is at or past C,
          // unless C is the published one kept (then nothing new is published).
          if (plan.advanced) {
            for (const l of layout) for (const a of l.arrivals.slice(l.k)) expect(a).toBeGreaterThanOrEqual(plan.cutoff);
            expect(now).toBeGreaterThanOrEqual(plan.cutoff);
          }
          // Idle shards never bound C: with all shards idle, C is now less the margin, floored.
          if (layout.every((l) => l.k === l.arrivals.length)) {
            const w = windowSeconds * 1000;
            expect(plan.candidate).toBe(Math.floor((now - margin * 1000) / w) * w);
          }
          // The bound is tight: C is within one window (plus the margin) of the earliest unarchived record.
          const firstUnarchived = Math.min(now, ...layout.flatMap((l) => l.arrivals.slice(l.k, l.k + 1)));
          expect(plan.candidate).toBeGreaterThan(firstUnarchived - margin * 1000 - windowSeconds * 1000);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('computeCutoff with backfills', () => {
  const idle: ArchiveProgress[] = [{ shardId: 'a', closed: false, probe: { kind: 'empty' } }];

  it('a backfill still writing holds the cutoff at its arrival time, less the margin, and names itself', () => {
    const T = Date.UTC(2030, 0, 1, 11, 30, 2, 500);
    const plan = computeCutoff({
      shards: idle,
      backfills: [{ shard: 'backfill-0123456789abcdef', arrival: T, state: 'writing' }],
      now: NOW,
      settings,
      published: null,
    });
    expect(plan.cutoff).toBe(Date.UTC(2030, 0, 1, 11, 29, 0));
    expect(plan.cutoff).toBeLessThanOrEqual(T);
    expect(plan.limitedBy).toBe('backfill-0123456789abcdef');
    expect(plan.shards.at(-1)).toEqual({ shardId: 'backfill-0123456789abcdef', state: 'lagging', bound: T });
  });

  it('a complete backfill is idle: it never holds the cutoff back', () => {
    const T = Date.UTC(2030, 0, 1, 11, 30, 0);
    const backfills = [{ shard: 'backfill-x', arrival: T, state: 'complete' as const }];
    const plan = computeCutoff({ shards: idle, backfills, now: NOW, settings, published: null });
    expect(plan.cutoff).toBe(Date.UTC(2030, 0, 1, 12, 0, 0));
    expect(plan.limitedBy).toBeUndefined();
  });

  it('a writing backfill at or before the published cutoff keeps the run from advancing', () => {
    const published = Date.UTC(2030, 0, 1, 11, 0, 0);
    const plan = computeCutoff({
      shards: idle,
      backfills: [{ shard: 'backfill-y', arrival: published, state: 'writing' }],
      now: NOW,
      settings,
      published,
    });
    expect(plan.advanced).toBe(false);
    expect(plan.cutoff).toBe(published);
  });

  it('property: C never passes the arrival time of a backfill still writing', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ offset: fc.integer({ min: 0, max: 8 * 3_600_000 }), writing: fc.boolean() }), { maxLength: 4 }),
        fc.integer({ min: 1, max: 3600 }).filter((w) => 86_400 % w === 0),
        fc.integer({ min: 0, max: 30 }),
        (bfs, windowSeconds, margin) => {
          const base = Date.UTC(2030, 0, 1);
          const now = base + 8 * 3_600_000;
          const backfills = bfs.map((b, i) => ({
            shard: `backfill-${i}`,
            arrival: base + b.offset,
            state: b.writing ? ('writing' as const) : ('complete' as const),
          }));
          const plan = computeCutoff({
            shards: idle,
            backfills,
            now,
            settings: { windowSeconds, cutoffMarginSeconds: margin },
            published: null,
          });
          for (const b of backfills) if (b.state === 'writing') expect(plan.cutoff).toBeLessThanOrEqual(b.arrival);
          if (backfills.every((b) => b.state === 'complete')) {
            const w = windowSeconds * 1000;
            expect(plan.candidate).toBe(Math.floor((now - margin * 1000) / w) * w);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

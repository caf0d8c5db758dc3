/**
 * Schedules of the simulation: plain data drawn from one seed by fast-check,
 * so a seed always gives the same schedule (`scheduleFor`) and a failing
 * schedule can be shrunk by fast-check (`shrinkable`: the same steps in an
 * array that may lose elements). Every step is meaningful after any earlier
 * step was removed: references to earlier events, versions or shards are
 * indices taken modulo what exists when the step runs.
 */
import fc from 'fast-check';
import type { BatchFault, InvokeFaultKind, PutFault, WriteFault } from './faults.ts';

export type EventType = 'page_view' | 'purchase' | 'signup' | 'click';

export type EventDraw =
  | {
      readonly kind: 'new';
      readonly type: EventType;
      /** 0: now; else minutes before now (late events, up to 3 days back). */
      readonly lateMin: number;
      readonly isoTs: boolean;
      readonly country: number;
      readonly page: number;
      /** Cents. */
      readonly amount: number;
      readonly loadMs: number;
      /** Oddities both layers must treat alike: no amount, a null country. */
      readonly odd: 'none' | 'noAmount' | 'nullCountry' | 'noCountry';
    }
  /** A client resending an event it already sent: identical, or with other values under the same id. */
  | { readonly kind: 'retry'; readonly pick: number; readonly changed: boolean; readonly amount: number; readonly country: number }
  /** An event ingest must reject, naming the field. */
  | { readonly kind: 'bad'; readonly variant: number };

export interface QueryDraw {
  readonly view: number;
  /** `from` is this many minutes before now (then floored to the view's grain when `align`). */
  readonly fromBackMin: number;
  readonly spanMin: number;
  readonly align: boolean;
  /** Steps coarser than the view's grain (clamped to `all`). */
  readonly coarser: number;
  /** `all`: no groupBy parameter; `none`: empty (totals); else a bit mask of the view's dimensions. */
  readonly groupBy: 'all' | 'none' | number;
  /** Equality filter on one dimension: [dimension index, value index]. */
  readonly filter: readonly [number, number] | null;
}

export type Step =
  | {
      readonly kind: 'send';
      readonly shape: 'single' | 'array' | 'wrapped';
      readonly events: readonly EventDraw[];
      readonly fault: PutFault | null;
    }
  | { readonly kind: 'poison'; readonly variant: number; readonly count: number }
  | { readonly kind: 'writeFault'; readonly consumer: 'speed' | 'archive'; readonly fault: WriteFault }
  | { readonly kind: 'deliveryFault'; readonly consumer: 'speed' | 'archive'; readonly fault: InvokeFaultKind }
  | { readonly kind: 'batch'; readonly via: 'http' | 'direct'; readonly fault: BatchFault | null }
  | { readonly kind: 'concurrentBatch' }
  | { readonly kind: 'rollback'; readonly back: number }
  | { readonly kind: 'restartWorkers' }
  | { readonly kind: 'restartCloud'; readonly hard: boolean }
  | { readonly kind: 'reshard'; readonly how: 'double' | 'split' | 'merge'; readonly pick: number }
  | { readonly kind: 'query'; readonly q: QueryDraw }
  /** Queries, each checked, while a batch run loads and publishes a version. */
  | { readonly kind: 'queryDuringBatch'; readonly q: QueryDraw; readonly hold: boolean }
  /** Concurrent POST /events, with identical copies of some events in flight at once (a client retrying before its first try answered). */
  | { readonly kind: 'burst'; readonly requests: number; readonly perRequest: number; readonly copies: number }
  | { readonly kind: 'pause'; readonly ms: number }
  /** Not in any profile: corrupts one speed item behind Tandem's back, to show the checks are not blind. */
  | { readonly kind: 'sabotage'; readonly what: 'double' | 'drop' }
  /**
   * A direct producer with KPL aggregation on (issue 22): new events (and identical copies, inside one
   * aggregate and in a second one) put straight into Kinesis as aggregates, one per shard their ids route
   * to (with `otherKeys`, user ids as partition keys instead, and aggregates as they come: copies of an id on
   * any shard); `bad`: one user record that is not an event; `corrupt`: one more aggregate with a bad checksum.
   */
  | {
      readonly kind: 'aggregated';
      readonly events: readonly EventDraw[];
      readonly copiesInside: number;
      readonly copiesAcross: number;
      readonly bad: boolean;
      readonly corrupt: boolean;
      /** Partition keys other than the ids (a user id): copies of an id land on any shard. */
      readonly otherKeys: boolean;
    };

export type StepKind = Step['kind'];

/** Relative weights of step kinds; a profile is a weight table. */
export type Profile = Record<StepKind, number>;

/** The long campaign: every fault the simulation knows. */
export const FULL: Profile = {
  send: 30,
  poison: 3,
  writeFault: 8,
  deliveryFault: 5,
  batch: 8,
  concurrentBatch: 2,
  rollback: 3,
  restartWorkers: 2,
  restartCloud: 1.2,
  reshard: 0.8,
  query: 14,
  queryDuringBatch: 3,
  burst: 4,
  pause: 4,
  sabotage: 0,
  // 0 here keeps every existing seed's schedule as it was (a weight changes fast-check's draws); PRODUCERS sets it.
  aggregated: 0,
};

/** `npm test`: the same faults, fewer slow ones (a restart of the emulators costs seconds). */
export const SHORT: Profile = { ...FULL, restartCloud: 0.4, reshard: 0.5 };

/** SHORT plus direct producers writing KPL aggregates (`npm run test:sim -- --profile producers`). */
export const PRODUCERS: Profile = { ...SHORT, aggregated: 4 };

export const PROFILES = { full: FULL, short: SHORT, producers: PRODUCERS } as const;
export type ProfileName = keyof typeof PROFILES;

const MINUTES_3_DAYS = 3 * 24 * 60;

const eventDraw: fc.Arbitrary<EventDraw> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      kind: fc.constant('new' as const),
      type: fc.constantFrom<EventType>('page_view', 'purchase', 'signup', 'click'),
      lateMin: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: MINUTES_3_DAYS }) }),
      isoTs: fc.boolean(),
      country: fc.nat(5),
      page: fc.nat(3),
      amount: fc.integer({ min: 1, max: 250_000 }),
      loadMs: fc.integer({ min: 1, max: 5000 }),
      odd: fc.constantFrom('none', 'none', 'none', 'none', 'noAmount', 'nullCountry', 'noCountry'),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('retry' as const),
      pick: fc.nat(1000),
      changed: fc.boolean(),
      amount: fc.integer({ min: 1, max: 250_000 }),
      country: fc.nat(5),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bad' as const), variant: fc.nat(7) }) },
);

const putFault: fc.Arbitrary<PutFault | null> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constantFrom('partial', 'throw', 'lost'),
      requests: fc.integer({ min: 1, max: 3 }),
      share: fc.constantFrom(0.3, 0.6, 1),
    }),
  },
);

const queryDraw: fc.Arbitrary<QueryDraw> = fc.record({
  view: fc.nat(2),
  fromBackMin: fc.oneof(fc.integer({ min: 0, max: 120 }), fc.integer({ min: 0, max: 4 * 24 * 60 })),
  spanMin: fc.oneof(fc.integer({ min: 1, max: 180 }), fc.integer({ min: 1, max: 5 * 24 * 60 })),
  align: fc.boolean(),
  coarser: fc.nat(3),
  groupBy: fc.oneof(fc.constant('all' as const), fc.constant('none' as const), fc.nat(3)),
  filter: fc.option(fc.tuple(fc.nat(1), fc.nat(6)), { nil: null }),
});

const stepArbs: Record<StepKind, fc.Arbitrary<Step>> = {
  send: fc.record({
    kind: fc.constant('send' as const),
    shape: fc.constantFrom('single', 'array', 'array', 'wrapped'),
    events: fc.array(eventDraw, { minLength: 1, maxLength: 25 }),
    fault: putFault,
  }),
  poison: fc.record({ kind: fc.constant('poison' as const), variant: fc.nat(5), count: fc.integer({ min: 1, max: 3 }) }),
  writeFault: fc.record({
    kind: fc.constant('writeFault' as const),
    consumer: fc.constantFrom('speed', 'archive'),
    fault: fc.record({ after: fc.nat(12), kind: fc.constantFrom('crash', 'crash', 'lost', 'lost', 'timeout', 'throttle') }),
  }),
  deliveryFault: fc.record({
    kind: fc.constant('deliveryFault' as const),
    consumer: fc.constantFrom('speed', 'archive'),
    fault: fc.constantFrom('errorAfter', 'redeliver', 'overlap'),
  }),
  batch: fc.record({
    kind: fc.constant('batch' as const),
    via: fc.constantFrom('http', 'direct'),
    fault: fc.option(
      fc.record({ stage: fc.constantFrom('plan', 'sql', 'load', 'publish'), mode: fc.constantFrom('crash', 'error'), view: fc.nat(2) }),
      {
        nil: null,
        freq: 2,
      },
    ),
  }),
  concurrentBatch: fc.constant({ kind: 'concurrentBatch' as const }),
  rollback: fc.record({ kind: fc.constant('rollback' as const), back: fc.integer({ min: 1, max: 3 }) }),
  restartWorkers: fc.constant({ kind: 'restartWorkers' as const }),
  restartCloud: fc.record({ kind: fc.constant('restartCloud' as const), hard: fc.boolean() }),
  reshard: fc.record({ kind: fc.constant('reshard' as const), how: fc.constantFrom('double', 'split', 'merge'), pick: fc.nat(7) }),
  query: fc.record({ kind: fc.constant('query' as const), q: queryDraw }),
  queryDuringBatch: fc.record({ kind: fc.constant('queryDuringBatch' as const), q: queryDraw, hold: fc.boolean() }),
  burst: fc.record({
    kind: fc.constant('burst' as const),
    requests: fc.integer({ min: 2, max: 5 }),
    perRequest: fc.integer({ min: 1, max: 12 }),
    copies: fc.integer({ min: 0, max: 6 }),
  }),
  pause: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 100, max: 2500 }) }),
  sabotage: fc.record({ kind: fc.constant('sabotage' as const), what: fc.constantFrom('double', 'drop') }),
  aggregated: fc.record({
    kind: fc.constant('aggregated' as const),
    events: fc.array(
      eventDraw.filter((d) => d.kind === 'new'),
      { minLength: 1, maxLength: 12 },
    ),
    copiesInside: fc.nat(3),
    copiesAcross: fc.nat(3),
    bad: fc.boolean(),
    corrupt: fc.boolean(),
    otherKeys: fc.boolean(),
  }),
};

export function stepArbitrary(profile: Profile): fc.Arbitrary<Step> {
  const entries = (Object.keys(stepArbs) as StepKind[]).filter((k) => profile[k] > 0);
  // Integer weights: fast-check wants whole numbers; x10 keeps one decimal of the profile.
  return fc.oneof(...entries.map((k) => ({ arbitrary: stepArbs[k], weight: Math.round(profile[k] * 10) })));
}

/** Exactly `steps` steps for a seed: the same seed always gives the same schedule. */
export function scheduleFor(seed: number, steps: number, profile: Profile = FULL): Step[] {
  const arb = fc.array(stepArbitrary(profile), { minLength: steps, maxLength: steps });
  return fc.sample(arb, { seed, numRuns: 1 })[0]!;
}

/** The arbitrary fast-check shrinks a failing schedule with (steps may be dropped). */
export function shrinkable(steps: number, profile: Profile = FULL): fc.Arbitrary<Step[]> {
  return fc.array(stepArbitrary(profile), { maxLength: steps });
}

/** A short text of one step for logs. */
export function describeStep(s: Step): string {
  switch (s.kind) {
    case 'send': {
      const n = (k: EventDraw['kind']) => s.events.filter((e) => e.kind === k).length;
      const fault = s.fault ? ` putFault=${s.fault.kind}x${s.fault.requests}` : '';
      return `send ${s.shape} new=${n('new')} retry=${n('retry')} bad=${n('bad')}${fault}`;
    }
    case 'poison':
      return `poison variant=${s.variant} x${s.count}`;
    case 'writeFault':
      return `${s.consumer} ${s.fault.kind} after ${s.fault.after} writes`;
    case 'deliveryFault':
      return `${s.consumer} delivery ${s.fault}`;
    case 'batch':
      return `batch via ${s.via}${s.fault ? ` ${s.fault.mode} at ${s.fault.stage}` : ''}`;
    case 'rollback':
      return `rollback ${s.back} back`;
    case 'restartCloud':
      return `restart cloud (${s.hard ? 'SIGKILL' : 'SIGTERM'})`;
    case 'reshard':
      return `reshard ${s.how}`;
    case 'query':
      return (
        `query view=${s.q.view} from=-${s.q.fromBackMin}m span=${s.q.spanMin}m ` +
        `coarser=${s.q.coarser} groupBy=${s.q.groupBy} filter=${s.q.filter ?? '-'}`
      );
    case 'pause':
      return `pause ${s.ms} ms`;
    case 'queryDuringBatch':
      return (
        `queries during a batch run, view=${s.q.view} coarser=${s.q.coarser} groupBy=${s.q.groupBy}` +
        `${s.hold ? ', the first held across the flip' : ''}`
      );
    case 'burst':
      return `burst of ${s.requests} concurrent sends x${s.perRequest} events, ${s.copies} copies in flight`;
    case 'sabotage':
      return `sabotage (${s.what} a speed item)`;
    case 'aggregated':
      return (
        `aggregated put of ${s.events.length} event(s), ${s.copiesInside} copies inside, ${s.copiesAcross} across` +
        `${s.bad ? ', a bad user record' : ''}${s.corrupt ? ', a corrupt aggregate' : ''}${s.otherKeys ? ', keyed by user ids' : ''}`
      );
    default:
      return s.kind;
  }
}

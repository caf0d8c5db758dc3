/**
 * The oracle's input: the client's own ledger, written independently of the
 * product. Which copies count is the dedup rule with a horizon (docs/api.md):
 * a copy does not count when another copy of its id arrived within H before
 * it. The client does not see arrival times, only that a copy arrived after
 * it was first sent and before it was acknowledged; so the ledger decides only
 * when that suffices: when every copy of an id lies within H of the first
 * (first send to last acknowledgement <= H), the first copy to arrive is the
 * only one that counts, and it is the first acknowledged copy's content (a
 * client sends a changed copy of an id only after the first was acknowledged;
 * copies never acknowledged are resent unchanged until they are). Any other
 * case throws rather than guess (with the simulation's H of 7 days it cannot
 * happen). The expected rows are test/support/oracle.ts `oracleRows` over
 * `events()` (shared with the headline property test; it uses none of
 * functions/core).
 */
import { SIM_SETTINGS } from './harness.ts';

export type Ev = Record<string, unknown> & { id: string; type: string; ts: string | number };

/** What the client's events are made of (indices in the schedule's draws are taken modulo these). */
export const COUNTRIES = ['DE', 'FR', 'US', 'JP', 'BR', 'IN'];
export const PAGES = ['/', '/pricing', '/docs', '/signup'];
export const TYPES = ['page_view', 'purchase', 'signup', 'click'];

export class Ledger {
  /** id -> the first acknowledged copy. */
  readonly acked = new Map<string, Ev>();
  /** id -> when it was first sent (no copy arrived before) and when a copy was last acknowledged (none arrived after). */
  readonly #firstSentAt = new Map<string, number>();
  readonly #lastAckAt = new Map<string, number>();
  /** Ids sent with a valid event, in order (what a client may resend). */
  readonly sent: string[] = [];
  /** Valid events sent but not acknowledged yet: resent unchanged until they are. */
  readonly unacked = new Map<string, Ev>();
  readonly poison: { shard: string; seq: string; variant: number }[] = [];

  /** @param horizonMs the dedup horizon H of the system under test, ms. */
  constructor(readonly horizonMs = SIM_SETTINGS.dedupHorizonSeconds * 1000) {}

  /** The copies that count under the dedup rule (see the module comment): the first acknowledged copy of every id. */
  events(): Ev[] {
    for (const id of this.acked.keys()) {
      const span = (this.#lastAckAt.get(id) ?? 0) - (this.#firstSentAt.get(id) ?? 0);
      if (span > this.horizonMs)
        throw new Error(
          `ledger: the copies of ${id} were sent over ${span} ms, more than the dedup horizon (${this.horizonMs} ms): ` +
            `the client cannot tell which of them count`,
        );
    }
    return [...this.acked.values()];
  }

  /** A new valid event, about to be sent for the first time. */
  sending(e: Ev): void {
    this.sent.push(e.id);
    this.unacked.set(e.id, e);
    if (!this.#firstSentAt.has(e.id)) this.#firstSentAt.set(e.id, Date.now());
  }

  /** A copy of an id was acknowledged: the first acknowledged copy is the one that counts (within H, see `events`). */
  ack(e: Ev): void {
    if (!this.acked.has(e.id)) this.acked.set(e.id, this.unacked.get(e.id) ?? e);
    this.unacked.delete(e.id);
    this.#lastAckAt.set(e.id, Date.now());
  }

  /** Of these events, the ones not acknowledged yet (once per id, as first sent): what the client resends. */
  pending(events: readonly Ev[]): Ev[] {
    const ids = new Set(events.flatMap((e) => (this.unacked.has(e.id) ? [e.id] : [])));
    return [...ids].map((id) => this.unacked.get(id)!);
  }
}

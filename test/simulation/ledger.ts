/**
 * The oracle's input: the client's own ledger, written independently of the
 * product. Per id, the first acknowledged copy: a client sends a changed copy
 * of an id only after the first was acknowledged, so the first acknowledged
 * copy is the first arrival; copies that were never acknowledged are resent
 * unchanged until they are. The expected rows are test/support/oracle.ts
 * `oracleRows` over `events()` (shared with the headline property test; it
 * uses none of functions/core).
 */

export type Ev = Record<string, unknown> & { id: string; type: string; ts: string | number };

/** What the client's events are made of (indices in the schedule's draws are taken modulo these). */
export const COUNTRIES = ['DE', 'FR', 'US', 'JP', 'BR', 'IN'];
export const PAGES = ['/', '/pricing', '/docs', '/signup'];
export const TYPES = ['page_view', 'purchase', 'signup', 'click'];

export class Ledger {
  /** id -> the first acknowledged copy. */
  readonly acked = new Map<string, Ev>();
  /** Ids sent with a valid event, in order (what a client may resend). */
  readonly sent: string[] = [];
  /** Valid events sent but not acknowledged yet: resent unchanged until they are. */
  readonly unacked = new Map<string, Ev>();
  readonly poison: { shard: string; seq: string; variant: number }[] = [];

  events(): Ev[] {
    return [...this.acked.values()];
  }

  /** A new valid event, about to be sent for the first time. */
  sending(e: Ev): void {
    this.sent.push(e.id);
    this.unacked.set(e.id, e);
  }

  /** The first acknowledged copy of an id is the one that counts. */
  ack(e: Ev): void {
    if (!this.acked.has(e.id)) this.acked.set(e.id, this.unacked.get(e.id) ?? e);
    this.unacked.delete(e.id);
  }

  /** Of these events, the ones not acknowledged yet (once per id, as first sent): what the client resends. */
  pending(events: readonly Ev[]): Ev[] {
    const ids = new Set(events.flatMap((e) => (this.unacked.has(e.id) ? [e.id] : [])));
    return [...ids].map((id) => this.unacked.get(id)!);
  }
}

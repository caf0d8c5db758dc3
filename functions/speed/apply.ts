/**
 * Exactly-once application of deltas to the speed table without transactions
 * (DESIGN invariant 5).
 *
 * One conditional UpdateItem per delta item: ADD the count/sum components and
 * `records`, SET `hw` to the delta's last sequence number, all under
 * `attribute_not_exists(hw) OR hw < :first`. An item is written by one Kinesis
 * shard only (the shard id is part of its key) and a shard runs one batch at a
 * time, so `hw` is the last record applied to the item, and the records of the
 * item with seq <= hw are exactly the ones applied. When the condition fails:
 *   - hw >= last: the delta is already applied (a redelivered batch): skip;
 *   - first <= hw < last: a retry whose batch extends past an earlier attempt:
 *     re-aggregate the item's records with seq > hw and apply only those
 *     ("repair"), under the same condition.
 *
 * min/max: DynamoDB has no min() in update expressions. They are kept by a
 * read-modify-write that rides on the same UpdateItem: the update SETs a
 * min/max component only when the delta's value beats the item's known value,
 * under the extra condition `attribute_not_exists(m) OR m > :v` (max: `<`). As
 * min only ever decreases, omitting a SET whose value does not beat a known
 * (possibly older) min is always right, and the condition protects a SET made
 * from stale knowledge. Since the whole update is one conditional write, the
 * ADDs, the hw move and the min/max change apply together or not at all, so a
 * retry never double-applies nor loses them. The item's values come for free:
 * from the previous write's UPDATED_NEW (kept in an ItemCache across invocations of
 * a warm container) or from the failed condition's ALL_OLD (a GetItem where the
 * store, like dynalite, does not return it). Without knowledge the update
 * optimistically SETs every min/max; in steady state it costs one write per item.
 */
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { type Delta, aggregate } from '../core/aggregate.ts';
import { Decimal, decimalText } from '../core/decimal.ts';
import { speedPk, speedSk } from '../core/keys.ts';
import { stateColumns } from '../core/metrics.ts';
import type { RawRecord } from '../core/record.ts';
import { type Settings, speedExpiry } from '../core/settings.ts';
import type { View } from '../core/views.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';

/** What a writer knows of a stored item: its hw and its min/max columns. */
export interface ItemKnowledge {
  readonly exists: boolean;
  readonly hw: string | undefined;
  /** min/max columns (`<metric>__min`, `<metric>__max`) as DynamoDB number text. */
  readonly extremes: Readonly<Record<string, string>>;
}

/**
 * Last known state of speed items, kept across invocations of a warm
 * container (a bounded LRU). It can only lag the table, never lead it (hw
 * only grows), so "hw >= last: skip" decided from it is always right, and any
 * other stale knowledge only costs a failed condition.
 */
export class ItemCache {
  readonly #items = new Map<string, ItemKnowledge>();
  constructor(readonly maxItems = 50_000) {}
  get(key: string): ItemKnowledge | undefined {
    const k = this.#items.get(key);
    if (k) {
      this.#items.delete(key);
      this.#items.set(key, k);
    }
    return k;
  }
  set(key: string, k: ItemKnowledge): void {
    this.#items.delete(key);
    this.#items.set(key, k);
    if (this.#items.size > this.maxItems) {
      const oldest = this.#items.keys().next().value;
      if (oldest !== undefined) this.#items.delete(oldest);
    }
  }
  clear(): void {
    this.#items.clear();
  }
  get size(): number {
    return this.#items.size;
  }
}

export interface ApplyStats {
  /** Successful UpdateItems. */
  written: number;
  /** Deltas found already applied (hw >= last). */
  skipped: number;
  /** Failed conditions. */
  conflicts: number;
  /** Partial re-applications of the records past hw. */
  repairs: number;
  /** UpdateItem and GetItem requests sent. */
  requests: number;
}

export const emptyApplyStats = (): ApplyStats => ({ written: 0, skipped: 0, conflicts: 0, repairs: 0, requests: 0 });

export interface ApplyContext {
  readonly ddb: DynamoDBClient;
  readonly table: string;
  readonly settings: Settings;
  readonly cache?: ItemCache | undefined;
  readonly stats: ApplyStats;
}

/** Attempts per item; more than two or three means another writer, which the design excludes. */
const MAX_ATTEMPTS = 6;

export const speedKey = (d: Pick<Delta, 'view' | 'window' | 'bucket' | 'dims' | 'shard'>) => ({
  pk: speedPk(d.view, d.window, d.shard),
  sk: speedSk(d.window, d.bucket, d.dims, d.shard),
});

/**
 * Applies one delta exactly once. `records` are the counted records the delta
 * was aggregated from (at least those of this item): a repair re-aggregates the
 * ones past the item's hw.
 */
export async function applyDelta(ctx: ApplyContext, view: View, delta: Delta, records: readonly RawRecord[], windowMs: number): Promise<void> {
  const { pk, sk } = speedKey(delta);
  const cacheKey = `${ctx.table}\n${pk}\n${sk}`;
  let known = ctx.cache?.get(cacheKey);
  let d: Delta = delta;
  for (let attempt = 0; ; attempt++) {
    if (attempt >= MAX_ATTEMPTS) throw new Error(`speed item ${pk} / ${sk}: condition still failing after ${MAX_ATTEMPTS} attempts`);
    if (known?.hw !== undefined) {
      if (known.hw >= delta.lastSeq) {
        ctx.stats.skipped++;
        return;
      }
      if (known.hw >= d.firstSeq) {
        d = tail(view, delta, records, known.hw, windowMs);
        ctx.stats.repairs++;
      }
    }
    const update = buildUpdate(view, d, pk, sk, speedExpiry(d.window, ctx.settings), known);
    try {
      ctx.stats.requests++;
      const res = await ctx.ddb.send(
        // UPDATED_NEW: hw and the min/max this write set (the rest is known already); a smaller answer than ALL_NEW.
        new UpdateItemCommand({ TableName: ctx.table, ...update, ReturnValues: 'UPDATED_NEW', ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }),
      );
      ctx.stats.written++;
      const learned = knowledge(view, res.Attributes);
      ctx.cache?.set(cacheKey, { exists: true, hw: learned.hw, extremes: { ...known?.extremes, ...learned.extremes } });
      return;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
      ctx.stats.conflicts++;
      if (e.Item) known = knowledge(view, e.Item);
      else {
        ctx.stats.requests++;
        const got = await ctx.ddb.send(new GetItemCommand({ TableName: ctx.table, Key: { pk: { S: pk }, sk: { S: sk } }, ConsistentRead: true }));
        known = knowledge(view, got.Item);
      }
    }
  }
}

/** The delta of the item's records past `hw` (non-empty: the caller checked hw < delta.lastSeq). */
function tail(view: View, delta: Delta, records: readonly RawRecord[], hw: string, windowMs: number): Delta {
  const { pk, sk } = speedKey(delta);
  const later = records.filter((r) => r.shard === delta.shard && r.seq > hw);
  const found = aggregate([view], later, windowMs).find((x) => {
    const k = speedKey(x);
    return k.pk === pk && k.sk === sk;
  });
  if (!found) throw new Error(`speed item ${pk} / ${sk}: hw ${hw} is below the delta's last record but no record past it was given`);
  return found;
}

export function knowledge(view: View, item: Record<string, AttributeValue> | undefined): ItemKnowledge {
  if (!item) return { exists: false, hw: undefined, extremes: {} };
  const extremes: Record<string, string> = {};
  for (const c of stateColumns(view)) {
    if (c.component !== 'min' && c.component !== 'max') continue;
    const n = item[c.column]?.N;
    if (n !== undefined) extremes[c.column] = n;
  }
  return { exists: true, hw: item.hw?.S, extremes };
}

export interface Update {
  readonly Key: Record<string, AttributeValue>;
  readonly UpdateExpression: string;
  readonly ConditionExpression: string;
  readonly ExpressionAttributeNames: Record<string, string>;
  readonly ExpressionAttributeValues: Record<string, AttributeValue>;
}

/** The conditional UpdateItem of one delta (pure; exported for unit tests). */
export function buildUpdate(view: View, d: Delta, pk: string, sk: string, expiresAt: number, known?: ItemKnowledge): Update {
  const names: Record<string, string> = { '#hw': 'hw' };
  const values: Record<string, AttributeValue> = { ':first': { S: d.firstSeq }, ':last': { S: d.lastSeq } };
  const add: string[] = [];
  const set: string[] = ['#hw = :last'];
  // An item known to exist needs neither the attribute_not_exists branch nor its constant
  // attributes again (shorter requests); if it vanished after all, the condition fails
  // and the retry, knowing better, writes the full item.
  const exists = known?.exists === true && known.hw !== undefined;
  const conditions: string[] = [exists ? '#hw < :first' : '(attribute_not_exists(#hw) OR #hw < :first)'];
  let n = 0;
  const name = (attr: string) => {
    const p = `#a${n++}`;
    names[p] = attr;
    return p;
  };
  const value = (v: AttributeValue) => {
    const p = `:v${n++}`;
    values[p] = v;
    return p;
  };
  add.push(`${name('records')} ${value({ N: String(d.records) })}`);
  for (const c of stateColumns(view)) {
    const v = d.state[c.metric]?.[c.component];
    if (c.component === 'count' || c.component === 'sum') {
      add.push(`${name(c.column)} ${value({ N: decimalText(v ?? new Decimal(0)) })}`);
      continue;
    }
    if (v == null) continue;
    const have = known?.extremes[c.column];
    if (have !== undefined && (c.component === 'min' ? new Decimal(have).lte(v) : new Decimal(have).gte(v))) continue;
    const a = name(c.column);
    const p = value({ N: decimalText(v) });
    set.push(`${a} = ${p}`);
    conditions.push(`(attribute_not_exists(${a}) OR ${a} ${c.component === 'min' ? '>' : '<'} ${p})`);
  }
  if (!exists) {
    set.push(`${name(TTL_ATTRIBUTE)} = ${value({ N: String(expiresAt) })}`);
    set.push(`${name('view')} = ${value({ S: d.view })}`);
    set.push(`${name('window')} = ${value({ N: String(d.window) })}`);
    set.push(`${name('bucket')} = ${value({ N: String(d.bucket) })}`);
    set.push(`${name('dims')} = ${value({ L: d.dims.map((x) => (x === null ? { NULL: true } : { S: x })) })}`);
    set.push(`${name('shard')} = ${value({ S: d.shard })}`);
  }
  return {
    Key: { pk: { S: pk }, sk: { S: sk } },
    UpdateExpression: `ADD ${add.join(', ')} SET ${set.join(', ')}`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}

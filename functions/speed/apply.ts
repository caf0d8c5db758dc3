/**
 * Exactly-once application of deltas to the speed table without transactions
 * (invariant 5, docs/design.md).
 *
 * A speed item is (view, arrival window, slot = event-time hour, Kinesis
 * shard) and holds one cell per (bucket, dimension values) of the slot
 * (functions/core/keys.ts). One conditional UpdateItem applies a chunk of the
 * item's records: ADD each touched cell's count/sum components and `records`,
 * SET `hw` to the chunk's last sequence number, all under
 * `attribute_not_exists(hw) OR hw < :first`. An item is written by one Kinesis
 * shard only (the shard id is part of its key) and a shard runs one batch at a
 * time, so `hw` is the last record applied to the item, and the records of the
 * item with seq <= hw are exactly the ones applied. The writer always applies
 * the item's records past the hw it knows, in order:
 *   - none left (hw >= the last): already applied (a redelivered batch): skip;
 *   - hw inside the batch: a retry whose batch extends past an earlier attempt:
 *     only the records past hw ("repair");
 *   - a chunk whose update would pass DynamoDB's 4 KB expression limit is cut
 *     in two, and the halves are applied one after the other (each moves hw).
 * When the condition fails the writer learns the item's hw and starts over.
 *
 * min/max: DynamoDB has no min() in update expressions. They are kept by a
 * read-modify-write that rides on the same UpdateItem: the update SETs a
 * cell's min/max only when the delta's value beats the item's known value,
 * under the extra condition `attribute_not_exists(m) OR m > :v` (max: `<`). As
 * min only ever decreases, omitting a SET whose value does not beat a known
 * (possibly older) min is always right, and the condition protects a SET made
 * from stale knowledge. Since the whole update is one conditional write, the
 * ADDs, the hw move and the min/max changes apply together or not at all, so a
 * retry never double-applies nor loses them. The item's values come for free:
 * from the previous write's UPDATED_NEW (kept in an ItemCache across invocations of
 * a warm container) or from the failed condition's ALL_OLD (a GetItem where the
 * store, like dynalite, does not return it). Without knowledge the update
 * optimistically SETs every min/max; in steady state it costs one write per item.
 *
 * distinct (a HyperLogLog sketch, core/hll.ts): register-wise max has no
 * update expression either, and a sketch has no order a condition could
 * compare. So for a view with a distinct metric the write is a plain
 * read-modify-write of the whole item state: it SETs each touched cell's
 * sketch to (the stored sketch merged with the delta's), computed from
 * knowledge that is *complete* (every sketch of the item as of its hw: a full
 * read, or the writer's own writes since one), under the condition `hw = <the
 * known hw>` instead of `hw < :first`. Every write moves hw forward, so hw
 * names one state of the item, and the condition admits the write only on the
 * state the merge was computed from; the hw condition keeps exactly-once as
 * before. Without complete knowledge (a new window's item, a cold container)
 * the writer assumes a new item, under `attribute_not_exists(hw)`; if the item
 * exists the condition fails and its ALL_OLD is complete knowledge. A cell
 * whose registers the delta does not raise is not rewritten.
 */
import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { aggregate, type CellDelta } from '../core/aggregate.ts';
import { Decimal, decimalText } from '../core/decimal.ts';
import { mergeSketches, parseSketch } from '../core/hll.ts';
import { cellAttribute, LATE_PART_MS, speedPart, speedPk, speedSk, speedSlot } from '../core/keys.ts';
import { stateColumns } from '../core/metrics.ts';
import type { RawRecord } from '../core/record.ts';
import { type Settings, speedExpiry } from '../core/settings.ts';
import { bucketStart, windowStart } from '../core/time.ts';
import { matchesFilter, type View } from '../core/views.ts';
import { TTL_ATTRIBUTE } from '../resources.ts';

/** What a writer knows of a stored item: its hw, its min/max columns and its sketches. */
export interface ItemKnowledge {
  readonly exists: boolean;
  readonly hw: string | undefined;
  /** min/max cell attributes (`<minute>|<dims>|<metric>__min`, `__max`) as DynamoDB number text. */
  readonly extremes: Readonly<Record<string, string>>;
  /** Sketch cell attributes (`<minute>|<dims>|<metric>__hll`), canonical text (core/hll.ts). */
  readonly sketches?: Readonly<Record<string, string>>;
  /**
   * The knowledge holds every sketch of the item as it stands at `hw` (or its absence): read
   * whole, or kept up by the writer's own writes conditioned on that hw. Only complete knowledge
   * may be merged into a sketch and written back.
   */
  readonly complete?: boolean;
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
  /** Items found already applied (hw >= their last record). */
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

/** Failed conditions per item; more than two or three means another writer, which the design excludes. */
const MAX_CONFLICTS = 6;

/**
 * DynamoDB's limit on each expression string is 4 KB (dynalite enforces it too). An update
 * above this budget is cut into chunks.
 */
const EXPRESSION_BUDGET = 4000;

/** Which speed item a delta (or a record) belongs to. */
export interface SpeedItemKey {
  readonly view: string;
  readonly window: number;
  /** Event-time hour of the item's buckets, ms. */
  readonly slot: number;
  /** 0, or the 10-second arrival span of a late slot (`speedPart`). */
  readonly part: number;
  readonly shard: string;
}

export const speedKey = (k: SpeedItemKey) => ({ pk: speedPk(k.view, k.window, k.shard), sk: speedSk(k.window, k.slot, k.part, k.shard) });

/** Does the view keep sketches (distinct metrics)? Its items are read, merged and rewritten whole. */
export const hasSketches = (view: View): boolean => Object.values(view.metrics).some((m) => m.fn === 'distinct');

/**
 * The item a record counts in for a view, or undefined when the view's filter drops it.
 * A view with sketches cuts even the current hour's item by arrival (`LATE_PART_MS`, as a late
 * slot's): a sketch grows by about 3 bytes per distinct value of a cell, DynamoDB charges a write
 * by the whole item's size, and every batch rewrites the item; cut, an item holds 10 s of
 * values, not a window's. Measured on the demo mix (120,000 records, batches of 1,000, write units
 * from dynalite's ConsumedCapacity): 0.056 per record without `users: distinct(user)` on
 * page_views; with it 0.114 (2.0x) uncut, 0.075 (1.34x) cut, for the same number of writes.
 */
export function recordItem(view: View, r: RawRecord, windowMs: number): SpeedItemKey | undefined {
  if (!matchesFilter(view, r.fields)) return undefined;
  const window = windowStart(r.arrival, windowMs);
  const slot = speedSlot(bucketStart(r.ts, view.grain));
  const part = hasSketches(view) ? 1 + Math.floor((r.arrival - window) / LATE_PART_MS) : speedPart(window, slot, r.arrival);
  return { view: view.name, window, slot, part, shard: r.shard };
}

/** Counted records grouped by the speed item they count in, per view, each group in sequence order. */
export function groupByItem(
  views: readonly View[],
  records: readonly RawRecord[],
  windowMs: number,
): { view: View; key: SpeedItemKey; records: RawRecord[] }[] {
  const out = new Map<string, { view: View; key: SpeedItemKey; records: RawRecord[] }>();
  for (const view of views) {
    for (const r of records) {
      const key = recordItem(view, r, windowMs);
      if (!key) continue;
      const id = JSON.stringify([key.view, key.window, key.slot, key.part, key.shard]);
      const group = out.get(id);
      if (group) group.records.push(r);
      else out.set(id, { view, key, records: [r] });
    }
  }
  const bySeq = (a: RawRecord, b: RawRecord) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0);
  for (const g of out.values()) g.records.sort(bySeq);
  return [...out.values()];
}

/**
 * Applies the records of one speed item exactly once: `records` are all the
 * batch's counted records of this item (`groupByItem`), in sequence order.
 */
export async function applyItem(
  ctx: ApplyContext,
  view: View,
  key: SpeedItemKey,
  records: readonly RawRecord[],
  windowMs: number,
): Promise<void> {
  const { pk, sk } = speedKey(key);
  const cacheKey = `${ctx.table}\n${pk}\n${sk}`;
  let known = ctx.cache?.get(cacheKey);
  let pending = records;
  let conflicts = 0;
  let wrote = false;
  for (;;) {
    if (known?.hw !== undefined) {
      const hw = known.hw;
      const past = pending.filter((r) => r.seq > hw);
      if (past.length === 0) {
        if (!wrote) ctx.stats.skipped++;
        return;
      }
      if (past.length < pending.length && !wrote) ctx.stats.repairs++;
      pending = past;
    }
    // The longest chunk from the start whose update fits the expression limit.
    let n = pending.length;
    let update = buildUpdate(view, key, aggregate([view], pending, windowMs), speedExpiry(key.window, ctx.settings), known);
    while (!fits(update)) {
      if (n === 1)
        throw new Error(`speed item ${pk} / ${sk}: the update of one record passes the ${EXPRESSION_BUDGET}-byte expression limit`);
      n = Math.ceil(n / 2);
      update = buildUpdate(view, key, aggregate([view], pending.slice(0, n), windowMs), speedExpiry(key.window, ctx.settings), known);
    }
    try {
      ctx.stats.requests++;
      const res = await ctx.ddb.send(
        // UPDATED_NEW: hw and what this write touched (the rest is known already); a smaller answer than ALL_NEW.
        new UpdateItemCommand({
          TableName: ctx.table,
          Key: update.Key,
          UpdateExpression: update.UpdateExpression,
          ConditionExpression: update.ConditionExpression,
          ExpressionAttributeNames: update.ExpressionAttributeNames,
          ExpressionAttributeValues: update.ExpressionAttributeValues,
          ReturnValues: 'UPDATED_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      ctx.stats.written++;
      wrote = true;
      const learned = knowledge(res.Attributes);
      known = {
        exists: true,
        hw: learned.hw,
        extremes: { ...known?.extremes, ...learned.extremes },
        sketches: { ...known?.sketches, ...learned.sketches },
        // A write with sketches was conditioned on the exact state it merged into (or on no item).
        complete: update.merges || known?.complete === true,
      };
      ctx.cache?.set(cacheKey, known);
      pending = pending.slice(n);
      if (pending.length === 0) return;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) {
        // DynamoDB (and dynalite) say "Item size to update has exceeded the maximum allowed size".
        if (e instanceof Error && e.name === 'ValidationException' && /item size/i.test(e.message)) {
          throw new Error(
            `speed item ${pk} / ${sk} of view ${view.name} would pass DynamoDB's 400 KB item limit: ` +
              `the view has too many distinct (bucket, dimension values) per arrival window for the speed layer; ` +
              `declare a coarser view`,
            { cause: e },
          );
        }
        throw e;
      }
      ctx.stats.conflicts++;
      if (++conflicts >= MAX_CONFLICTS)
        throw new Error(`speed item ${pk} / ${sk}: condition still failing after ${MAX_CONFLICTS} attempts`);
      if (e.Item) known = wholeItem(e.Item);
      else {
        ctx.stats.requests++;
        const got = await ctx.ddb.send(
          new GetItemCommand({ TableName: ctx.table, Key: { pk: { S: pk }, sk: { S: sk } }, ConsistentRead: true }),
        );
        known = wholeItem(got.Item);
      }
    }
  }
}

const fits = (u: Update) => u.UpdateExpression.length <= EXPRESSION_BUDGET && u.ConditionExpression.length <= EXPRESSION_BUDGET;

/**
 * What an item (or the part of it an update returned) tells a writer: hw, the cells' min/max and
 * sketches. Whether that is complete, the caller knows (`wholeItem`).
 */
export function knowledge(item: Record<string, AttributeValue> | undefined): ItemKnowledge {
  if (!item) return { exists: false, hw: undefined, extremes: {} };
  const extremes: Record<string, string> = {};
  const sketches: Record<string, string> = {};
  for (const [name, v] of Object.entries(item)) {
    if (!name.includes('|')) continue;
    if (v.N !== undefined && (name.endsWith('__min') || name.endsWith('__max'))) extremes[name] = v.N;
    if (v.S !== undefined && name.endsWith('__hll')) sketches[name] = v.S;
  }
  return { exists: true, hw: item.hw?.S, extremes, ...(Object.keys(sketches).length > 0 && { sketches }) };
}

/** The knowledge a whole item (a failed condition's ALL_OLD, a GetItem) gives: complete. */
const wholeItem = (item: Record<string, AttributeValue> | undefined): ItemKnowledge => ({ ...knowledge(item), complete: true });

export interface Update {
  readonly Key: Record<string, AttributeValue>;
  readonly UpdateExpression: string;
  readonly ConditionExpression: string;
  readonly ExpressionAttributeNames: Record<string, string>;
  readonly ExpressionAttributeValues: Record<string, AttributeValue>;
  /** The view has sketches: the write is conditioned on the item's exact state (not sent to DynamoDB). */
  readonly merges: boolean;
}

/** The conditional UpdateItem applying cell deltas (all of item `key`) in one write (pure; exported for unit tests). */
export function buildUpdate(view: View, key: SpeedItemKey, cells: readonly CellDelta[], expiresAt: number, known?: ItemKnowledge): Update {
  if (cells.length === 0) throw new Error('buildUpdate: no cell to apply');
  const { pk, sk } = speedKey(key);
  // biome-ignore lint/complexity/useMathMinMax: padded sequence numbers are strings; Math.min would make them imprecise floats
  const firstSeq = cells.reduce((m, c) => (c.firstSeq < m ? c.firstSeq : m), cells[0]!.firstSeq);
  // biome-ignore lint/complexity/useMathMinMax: as above
  const lastSeq = cells.reduce((m, c) => (c.lastSeq > m ? c.lastSeq : m), cells[0]!.lastSeq);
  const names: Record<string, string> = { '#hw': 'hw' };
  const values: Record<string, AttributeValue> = { ':last': { S: lastSeq } };
  const add: string[] = [];
  const set: string[] = ['#hw = :last'];
  // An item known to exist needs neither the attribute_not_exists branch nor its constant
  // attributes again (shorter requests); if it vanished after all, the condition fails
  // and the retry, knowing better, writes the full item.
  const columns = stateColumns(view);
  // Sketches merge from the item's exact state (module comment): its hw, or no item at all.
  const merges = columns.some((c) => c.component === 'hll');
  const complete = known?.complete === true;
  // Without complete knowledge a view with sketches writes as to a new item (constants included).
  const exists = known?.exists === true && known.hw !== undefined && (!merges || complete);
  let conditions: string[];
  if (!merges) {
    values[':first'] = { S: firstSeq };
    conditions = [exists ? '#hw < :first' : '(attribute_not_exists(#hw) OR #hw < :first)'];
  } else if (complete && exists) {
    values[':hw'] = { S: known.hw! };
    conditions = ['#hw = :hw'];
  } else conditions = ['attribute_not_exists(#hw)'];
  // Stored sketches count only when the knowledge is complete; else the item is assumed new.
  const stored = complete ? (known?.sketches ?? {}) : {};
  // Short placeholders (the 4 KB limit counts them), with a prefix that keeps them from ever
  // spelling a fixed one: a bare base-36 counter reaches `hw` at 644.
  let n = 0;
  const name = (attr: string) => {
    const p = `#c${(n++).toString(36)}`;
    names[p] = attr;
    return p;
  };
  const value = (v: AttributeValue) => {
    const p = `:c${(n++).toString(36)}`;
    values[p] = v;
    return p;
  };
  for (const d of cells) {
    if (d.view !== key.view || d.window !== key.window || d.shard !== key.shard || speedSlot(d.bucket) !== key.slot) {
      throw new Error(
        `buildUpdate: a cell of ${JSON.stringify([d.view, d.window, d.bucket, d.shard])} is not in item ${JSON.stringify(key)}`,
      );
    }
    const attr = (column: string) => cellAttribute(key.slot, d.bucket, d.dims, column);
    add.push(`${name(attr('records'))} ${value({ N: String(d.records) })}`);
    for (const c of columns) {
      if (c.component === 'hll') {
        const delta = d.state[c.metric]?.hll ?? null;
        if (delta === null) continue;
        const before = stored[attr(c.column)];
        const merged = mergeSketches(before === undefined ? null : parseSketch(before), delta)!;
        const text = merged.toText();
        if (text !== before) set.push(`${name(attr(c.column))} = ${value({ S: text })}`);
        continue;
      }
      const v = d.state[c.metric]?.[c.component];
      if (c.component === 'count' || c.component === 'sum') {
        add.push(`${name(attr(c.column))} ${value({ N: decimalText(v ?? new Decimal(0)) })}`);
        continue;
      }
      if (v == null) continue;
      const have = known?.extremes[attr(c.column)];
      if (have !== undefined && (c.component === 'min' ? new Decimal(have).lte(v) : new Decimal(have).gte(v))) continue;
      const a = name(attr(c.column));
      const p = value({ N: decimalText(v) });
      set.push(`${a} = ${p}`);
      conditions.push(`(attribute_not_exists(${a}) OR ${a} ${c.component === 'min' ? '>' : '<'} ${p})`);
    }
  }
  if (!exists) {
    set.push(`${name(TTL_ATTRIBUTE)} = ${value({ N: String(expiresAt) })}`);
    set.push(`${name('view')} = ${value({ S: key.view })}`);
    set.push(`${name('window')} = ${value({ N: String(key.window) })}`);
    set.push(`${name('slot')} = ${value({ N: String(key.slot) })}`);
    set.push(`${name('part')} = ${value({ N: String(key.part) })}`);
    set.push(`${name('shard')} = ${value({ S: key.shard })}`);
  }
  return {
    Key: { pk: { S: pk }, sk: { S: sk } },
    UpdateExpression: `ADD ${add.join(', ')} SET ${set.join(', ')}`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
    merges,
  };
}

import { describe, expect, it } from 'vitest';
import {
  BATCH_PARTITION_MS,
  BLOCK_MS,
  batchPartitionStart,
  batchPartitions,
  batchPk,
  blockSk,
  blockStart,
  cellAttribute,
  cellsOf,
  dimsKey,
  fnv1a,
  pad13,
  padVersion,
  parseCellAttribute,
  speedPart,
  speedPartitions,
  speedPk,
  speedSk,
  speedSlot,
  WRITE_SHARDS,
  writeShard,
} from '../../functions/core/keys.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const W = Date.UTC(2024, 2, 15, 13, 47); // a window start
const B = Date.UTC(2024, 2, 15, 13); // a bucket start

describe('keys: encodings', () => {
  it('pads times and versions so they sort as strings', () => {
    expect(pad13(5)).toBe('0000000000005');
    expect(pad13(W)).toHaveLength(13);
    expect(padVersion(7)).toBe('0000000007');
    expect(padVersion(9) < padVersion(10)).toBe(true);
  });

  it('encodes dimension values as self-delimiting JSON, null distinct from "null"', () => {
    expect(dimsKey(['DE', null])).toBe('["DE",null]');
    expect(dimsKey([null])).not.toBe(dimsKey(['null']));
    expect(dimsKey(['a#b'])).not.toBe(dimsKey(['a', 'b']));
  });

  it('hashes with FNV-1a 32-bit', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect(fnv1a('foobar')).toBe(0xbf9cf968);
  });

  it('spreads shard ids over the write shards, stably', () => {
    const shards = Array.from({ length: 64 }, (_, i) => `shardId-${String(i).padStart(12, '0')}`).map(writeShard);
    expect(new Set(shards).size).toBe(WRITE_SHARDS);
    expect(shards.every((s) => s >= 0 && s < WRITE_SHARDS)).toBe(true);
    expect(writeShard('shardId-000000000001')).toBe(writeShard('shardId-000000000001'));
  });
});

describe('keys: speed table', () => {
  it('partitions by view, arrival hour and write shard; sorts by window, slot (event hour), shard', () => {
    const shard = 'shardId-000000000003';
    expect(speedPk('v', W, shard)).toBe(`v#${Date.UTC(2024, 2, 15, 13)}#${writeShard(shard)}`);
    expect(speedSlot(B + 17 * 60_000 + 5)).toBe(B);
    expect(speedSk(W, B, 3, shard)).toBe(`${pad13(W)}#${pad13(B)}#3#${shard}`);
    expect(speedSk(W, B, 6, shard) < speedSk(W + 60_000, 0, 0, shard)).toBe(true);
  });

  it('cuts the item of a late slot by 10-second arrival spans; the current hour is one part', () => {
    const window = Date.UTC(2024, 2, 15, 13, 42);
    expect(speedPart(window, Date.UTC(2024, 2, 15, 13), window + 59_999)).toBe(0);
    expect(speedPart(window, Date.UTC(2024, 2, 15, 12), window)).toBe(1);
    expect(speedPart(window, Date.UTC(2024, 2, 15, 12), window + 9_999)).toBe(1);
    expect(speedPart(window, Date.UTC(2024, 2, 15, 12), window + 10_000)).toBe(2);
    expect(speedPart(window, Date.UTC(2024, 2, 15, 9), window + 59_999)).toBe(6);
    // A bucket ahead of the arrival (a producer's clock ahead) is not the current hour either.
    expect(speedPart(window, Date.UTC(2024, 2, 15, 14), window + 20_000)).toBe(3);
  });

  it('names a cell column by its minute in the slot and its dimension values, and reads it back', () => {
    const dims = ['a|b', null, '["x"]'];
    const attr = cellAttribute(B, B + 42 * 60_000, dims, 'revenue__sum');
    expect(attr).toBe(`42|${JSON.stringify(dims)}|revenue__sum`);
    expect(parseCellAttribute(B, attr)).toEqual({ bucket: B + 42 * 60_000, dims, dimsKey: JSON.stringify(dims), column: 'revenue__sum' });
    for (const other of ['hw', 'slot', 'expiresAt', 'view']) expect(parseCellAttribute(B, other)).toBeUndefined();
    const cells = cellsOf(B, {
      [attr]: 3,
      [cellAttribute(B, B + 42 * 60_000, dims, 'records')]: 2,
      [cellAttribute(B, B, [], 'records')]: 1,
      hw: 'x',
      slot: B,
    });
    expect(cells).toEqual([
      { bucket: B + 42 * 60_000, dims, columns: { revenue__sum: 3, records: 2 } },
      { bucket: B, dims: [], columns: { records: 1 } },
    ]);
  });

  it('lists the partitions of windows >= a cutoff, with a key lower bound in the first hour', () => {
    const from = Date.UTC(2024, 2, 15, 13, 30);
    const to = Date.UTC(2024, 2, 15, 15, 0);
    const parts = speedPartitions('v', from, to);
    expect(parts).toHaveLength(2 * WRITE_SHARDS);
    expect(parts[0]).toEqual({ pk: `v#${Date.UTC(2024, 2, 15, 13)}#0`, skFrom: pad13(from) });
    expect(parts[WRITE_SHARDS]).toEqual({ pk: `v#${Date.UTC(2024, 2, 15, 14)}#0`, skFrom: pad13(Date.UTC(2024, 2, 15, 14)) });
    // every window in range falls in a listed partition at or after its lower bound
    for (let w = from; w < to; w += 60_000) {
      const pk = speedPk('v', w, 'shardId-000000000000');
      const part = parts.find((p) => p.pk === pk);
      expect(part).toBeDefined();
      expect(speedSk(w, 0, 0, 's') >= part!.skFrom).toBe(true);
    }
  });
});

describe('keys: batch-view table', () => {
  it('partitions by view, version and a span per grain', () => {
    expect(BATCH_PARTITION_MS).toEqual({ minute: DAY, hour: 30 * DAY, day: 360 * DAY });
    expect(batchPartitionStart(B + 5 * HOUR, 'minute')).toBe(Date.UTC(2024, 2, 15));
    expect(batchPartitionStart(B, 'hour') % (30 * DAY)).toBe(0);
    expect(batchPk('v', 3, B, 'minute')).toBe(`v#0000000003#${Date.UTC(2024, 2, 15)}`);
  });

  it('keys blocks by an epoch-aligned span per grain of the rows, then chunk', () => {
    expect(BLOCK_MS).toEqual({ minute: HOUR, hour: DAY, day: 30 * DAY });
    expect(blockStart(B + 59 * 60_000, 'minute')).toBe(B);
    expect(blockStart(B, 'hour')).toBe(Date.UTC(2024, 2, 15));
    expect(blockStart(B, 'day') % (30 * DAY)).toBe(0);
    expect(blockSk(B, 0)).toBe(`${pad13(B)}#000`);
    expect(blockSk(B, 12) > blockSk(B, 2)).toBe(true);
    // A block never straddles a partition of its view's grain: the spans divide the partition spans.
    for (const g of ['minute', 'hour', 'day'] as const) expect(BATCH_PARTITION_MS[g] % BLOCK_MS[g]).toBe(0);
    // A block starting at `to` sorts after pad13(to): a reader's BETWEEN bound excludes it.
    expect(blockSk(B, 0) > pad13(B)).toBe(true);
  });

  it('lists the partitions covering a bucket range', () => {
    const from = Date.UTC(2024, 2, 14, 23);
    const to = Date.UTC(2024, 2, 16, 1);
    expect(batchPartitions('v', 1, 'minute', from, to)).toEqual([
      `v#0000000001#${Date.UTC(2024, 2, 14)}`,
      `v#0000000001#${Date.UTC(2024, 2, 15)}`,
      `v#0000000001#${Date.UTC(2024, 2, 16)}`,
    ]);
    for (let b = from; b < to; b += HOUR) expect(batchPartitions('v', 1, 'minute', from, to)).toContain(batchPk('v', 1, b, 'minute'));
    expect(batchPartitions('v', 1, 'day', from, to)).toHaveLength(1);
  });
});

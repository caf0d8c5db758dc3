/**
 * Compaction's pure parts: the Parquet object keys, the partition predicate of a set of
 * compacted hours, and the Athena source reading compacted hours from the Parquet table and
 * the others from the raw table. (Behaviour against the emulators: test/integration/compact.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { rawObjectKey } from '../../functions/archive/layout.ts';
import { compactedReadsOf, compactUnloadSql, objectReadsOf, objectsQuerySql, verifiedHours } from '../../functions/batch/athena.ts';
import { compactFileName } from '../../functions/batch/athena-compact.ts';
import { compactHourPrefix, compactObjectKey, parseCompactKey } from '../../functions/batch/compact.ts';
import { pad13 } from '../../functions/core/keys.ts';
import { SEQ_WIDTH } from '../../functions/core/record.ts';
import { athenaSource, hoursPredicate } from '../../functions/core/sql.ts';

const H = 3_600_000;
const DAY = 24 * H;
const D0 = Date.UTC(2030, 6, 20);

describe('compaction', () => {
  it('names one Parquet object per arrival hour and parses it back', () => {
    expect(compactObjectKey(D0 + 10 * H)).toBe('compact/dt=2030-07-20/hr=10/part-0.parquet');
    expect(parseCompactKey('compact/dt=2030-07-20/hr=10/part-0.parquet')).toEqual({
      key: 'compact/dt=2030-07-20/hr=10/part-0.parquet',
      hour: D0 + 10 * H,
    });
    // Any .parquet name directly under the hour's prefix: an Athena UNLOAD writes several, named by Athena.
    expect(parseCompactKey('compact/dt=2030-07-20/hr=10/20300720_q1_00001.parquet')?.hour).toBe(D0 + 10 * H);
    expect(compactHourPrefix(D0 + 10 * H)).toBe('compact/dt=2030-07-20/hr=10/');
    expect(parseCompactKey('compact/dt=2030-07-20/hr=10/other.json')).toBeUndefined();
    expect(parseCompactKey('compact/dt=2030-07-20/hr=10/sub/x.parquet')).toBeUndefined();
    expect(parseCompactKey('raw/dt=2030-07-20/hr=10/part-0.parquet')).toBeUndefined();
    expect(compactFileName('athena/compact/r1/x/a0/20300720_q1_00001')).toBe('20300720_q1_00001.parquet');
    expect(compactFileName('athena/compact/r1/x/a0/y.parquet')).toBe('y.parquet');
  });

  it('matches exactly the compacted hours: whole days by dt, other days by dt and hr', () => {
    const wholeDay = Array.from({ length: 24 }, (_, i) => D0 + i * H);
    expect(hoursPredicate([...wholeDay, D0 + DAY + 2 * H, D0 + DAY + H])).toBe(
      "(dt IN ('2030-07-20') OR (dt = '2030-07-21' AND hr IN ('01', '02')))",
    );
    expect(hoursPredicate([])).toBe('false');
  });

  it('reads compacted hours from the Parquet table and the others from the raw table, never both', () => {
    const sql = athenaSource('db', 'raw_events', D0 + 5 * H, D0, { table: 'raw_events_compact', hours: [D0, D0 + H] });
    const hours = "((dt = '2030-07-20' AND hr IN ('00', '01')))";
    expect(sql).toContain(`FROM "db"."raw_events_compact" WHERE`);
    expect(sql).toContain(`AND ${hours}\n    UNION ALL`);
    expect(sql).toContain(`FROM "db"."raw_events" WHERE`);
    expect(sql).toContain(`AND NOT ${hours}`);
    expect(sql).not.toMatch(/\btype\b/);
    // Without compacted hours, the raw table alone as before.
    expect(athenaSource('db', 'raw_events', D0 + 5 * H, D0, { table: 'raw_events_compact', hours: [] })).toBe(
      athenaSource('db', 'raw_events', D0 + 5 * H, D0),
    );
  });

  it('on Athena, UNLOADs one hour of the columns the batch reads to Parquet (ZSTD), sorted, into an attempt prefix', () => {
    const { head, tail } = compactUnloadSql('db', 'raw_events', D0 + 10 * H, 's3://results/athena/compact/r1/x/');
    const sql = `${head}0${tail}`;
    expect(sql).toContain('SELECT id, ts, arrival, shard, seq, fields, num\n  FROM "db"."raw_events"');
    expect(sql).toContain("WHERE dt = '2030-07-20' AND hr = '10'");
    expect(sql).toContain('ORDER BY arrival, shard, seq');
    expect(sql).toContain("TO 's3://results/athena/compact/r1/x/a0/'\nWITH (format = 'PARQUET', compression = 'ZSTD')");
    expect(sql).not.toMatch(/\btype\b/);
    expect(() => compactUnloadSql('db', 'raw_events', D0, "s3://results/x'/")).toThrow(/UNLOAD location/);
  });

  it('the completeness query counts compacted hours per (file, shard) from the Parquet table, the others per raw object', () => {
    const compacted = { table: 'raw_events_compact', hours: [D0, D0 + H] };
    const sql = objectsQuerySql('db', 'raw_events', D0 + 5 * H, D0, compacted);
    const hours = "((dt = '2030-07-20' AND hr IN ('00', '01')))";
    expect(sql).toContain(`AND NOT ${hours}\n  UNION ALL`);
    expect(sql).toContain(`"db"."raw_events_compact"`);
    expect(sql).toMatch(/GROUP BY 1, 5$/);
    // Without compacted hours, the query of before.
    expect(objectsQuerySql('db', 'raw_events', D0 + 5 * H, D0, { ...compacted, hours: [] })).toBe(
      objectsQuerySql('db', 'raw_events', D0 + 5 * H, D0),
    );
    const prefix = 's3://raw/';
    const rows = [
      ['s3://raw/raw/dt=2030-07-20/hr=02/shardId-1/a-b.json.gz', '3', '3', '100', null],
      ['s3://raw/compact/dt=2030-07-20/hr=00/f1.parquet', '2', '2', '50', 'shardId-1'],
      ['s3://raw/compact/dt=2030-07-20/hr=00/f1.parquet', '1', '1', '50', 'shardId-2'],
      ['s3://raw/compact/dt=2030-07-20/hr=00/f2.parquet', '4', '4', '70', 'shardId-1'],
    ];
    expect([...objectReadsOf(rows, prefix).keys()]).toEqual(['raw/dt=2030-07-20/hr=02/shardId-1/a-b.json.gz']);
    const reads = compactedReadsOf(rows, prefix);
    expect([...reads.keys()]).toEqual([D0]);
    expect(reads.get(D0)!.bytes).toBe(120);
    expect(Object.fromEntries(reads.get(D0)!.shards)).toEqual({
      'shardId-1': { lines: 6, covered: 6 },
      'shardId-2': { lines: 1, covered: 1 },
    });
    expect(() => compactedReadsOf([['s3://raw/raw/x.json.gz', '1', '1', '1', 's']], prefix)).toThrow(/not/);
  });

  it("keeps what a run's check read per (raw hour, shard): every object's lines, the objects, the lines the manifest records", () => {
    const seq = (n: number) => String(n).padStart(SEQ_WIDTH, '0');
    const k1 = rawObjectKey('shardId-1', D0 + 2 * H, seq(1), seq(5));
    const k2 = rawObjectKey('shardId-1', D0 + 2 * H, seq(6), seq(9));
    const k3 = rawObjectKey('shardId-2', D0 + 3 * H, seq(1), seq(2));
    const reads = new Map([
      [k1, { lines: 5, covered: 5, bytes: 10 }],
      [k2, { lines: 4, covered: 4, bytes: 10 }],
      [k3, { lines: 2, covered: 1, bytes: 10 }],
    ]);
    const expected = [
      { key: k1, lines: 5, hour: D0 + 2 * H, shard: 'shardId-1' },
      { key: k3, lines: 2, hour: D0 + 3 * H, shard: 'shardId-2' },
      // An hour the check did not read (compacted, or outside the range) is not kept.
      { key: 'x', lines: 1, hour: D0 + 4 * H, shard: 'shardId-1' },
    ];
    expect(verifiedHours(D0 + 5 * H, reads, expected)).toEqual({
      cutoff: D0 + 5 * H,
      hours: {
        [pad13(D0 + 2 * H)]: { 'shardId-1': { lines: 9, objects: 2, recorded: 5 } },
        [pad13(D0 + 3 * H)]: { 'shardId-2': { lines: 2, objects: 1, recorded: 2 } },
      },
    });
  });
});

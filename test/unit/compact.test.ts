/**
 * Compaction's pure parts: the Parquet object keys, the partition predicate of a set of
 * compacted hours, and the Athena source reading compacted hours from the Parquet table and
 * the others from the raw table. (Behaviour against the emulators: test/integration/compact.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { compactObjectKey, parseCompactKey } from '../../functions/batch/compact.ts';
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
    expect(parseCompactKey('compact/dt=2030-07-20/hr=10/other.parquet')).toBeUndefined();
    expect(parseCompactKey('raw/dt=2030-07-20/hr=10/part-0.parquet')).toBeUndefined();
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
});

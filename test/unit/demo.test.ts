import { afterEach, describe, expect, it, vi } from 'vitest';
import { toRawRecord } from '../../functions/core/record.ts';
import { DEMO_COUNTRIES, DEMO_PAGES, type DemoEvent, DemoGenerator, startDemo } from '../../local/demo.ts';

const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

describe('demo event generator', () => {
  it('is deterministic for a seed', () => {
    const a = new DemoGenerator({ seed: 7 }).tick(NOW, 50);
    const b = new DemoGenerator({ seed: 7 }).tick(NOW, 50);
    expect(a).toEqual(b);
  });

  it('makes valid events of the three types over ~6 pages and ~6 countries, with cents and load times', () => {
    const g = new DemoGenerator({ seed: 1 });
    const events = g.tick(NOW, 5000).events;
    for (const [i, e] of events.entries()) {
      // The consumers' own parser accepts every demo event.
      const r = toRawRecord(e, NOW, 'shardId-000000000000', String(i + 1));
      expect(r.id).toBe(e.id);
    }
    const types = new Set(events.map((e) => e.type));
    expect([...types].sort()).toEqual(['page_view', 'purchase', 'signup']);
    const views = events.filter((e) => e.type === 'page_view');
    expect(new Set(views.map((e) => e.page))).toEqual(new Set(DEMO_PAGES));
    expect(new Set(events.map((e) => e.country))).toEqual(new Set(DEMO_COUNTRIES));
    expect(views.every((e) => Number.isInteger(e.load_ms) && (e.load_ms as number) > 0)).toBe(true);
    const amounts = events.filter((e) => e.type === 'purchase').map((e) => e.amount as number);
    expect(amounts.every((a) => Math.round(a * 100) / 100 === a && a > 0)).toBe(true);
    expect(amounts.some((a) => !Number.isInteger(a))).toBe(true);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
  });

  it('makes some events late (minutes to hours back) and resends some with the same id', () => {
    const g = new DemoGenerator({ seed: 3, lateFraction: 0.1, duplicateFraction: 0.05 });
    const sent = new Map<string, DemoEvent>();
    let retries: DemoEvent[] = [];
    let total = 0;
    for (let t = 0; t < 100; t++) {
      const tick = g.tick(NOW + t * 1000, 50);
      for (const e of tick.events) sent.set(e.id, e);
      total += tick.events.length;
      retries = retries.concat(tick.retries);
      // A retry is an exact copy of an event sent in an earlier tick.
      for (const r of tick.retries) expect(tick.events.some((e) => e.id === r.id)).toBe(false);
    }
    for (const r of retries) expect(r).toEqual(sent.get(r.id));
    expect(retries.length / total).toBeGreaterThan(0.025);
    expect(retries.length / total).toBeLessThan(0.075);
    const lateness = [...sent.values()].map((e, i) => NOW + Math.floor(i / 50) * 1000 - Date.parse(e.ts));
    const late = lateness.filter((ms) => ms >= 120_000);
    expect(late.length / total).toBeGreaterThan(0.07);
    expect(late.length / total).toBeLessThan(0.13);
    expect(Math.max(...lateness)).toBeLessThanOrEqual(3 * 3_600_000);
    expect(lateness.filter((ms) => ms < 120_000).every((ms) => ms >= 0 && ms < 2000)).toBe(true);
  });
});

describe('demo sender loop', () => {
  afterEach(() => vi.useRealTimers());

  it('sends about rate events per second, retries in their own request, and never two requests at once', async () => {
    vi.useFakeTimers();
    const requests: DemoEvent[][] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const demo = startDemo({
      ratePerSecond: 20,
      generator: new DemoGenerator({ seed: 5, duplicateFraction: 0.2 }),
      send: async (events) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        requests.push([...events]);
        await new Promise((r) => setTimeout(r, 10));
        inFlight--;
      },
    });
    await vi.advanceTimersByTimeAsync(10_000);
    const stopped = demo.stop();
    await vi.advanceTimersByTimeAsync(100);
    await stopped;
    const s = demo.stats();
    expect(s.sent).toBe(200);
    expect(s.retried).toBeGreaterThan(0);
    expect(maxInFlight).toBe(1);
    const ids = new Set(
      requests
        .filter((r) => r.length === 20)
        .flat()
        .map((e) => e.id),
    );
    for (const r of requests.filter((r) => r.length !== 20)) for (const e of r) expect(ids.has(e.id)).toBe(true);
  });
});

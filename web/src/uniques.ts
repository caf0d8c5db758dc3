/**
 * The unique-users card: the first declared `distinct` metric (the demo's
 * `page_views.users`), as totals per bucket over the range and grain chosen
 * above, refreshed with the main chart. Each point is the estimate of the
 * bucket's own sketch (batch and speed merged by the API), so buckets are not
 * added up: the caption gives the range's estimate, asked with `grain=all`.
 */
import type { QueryAnswer, ViewInfo } from '../../functions/contract/api.ts';
import type { Api } from './api.ts';
import { Chart } from './chart.ts';
import { num } from './format.ts';
import { buildModel, type ChartGrain, GRAIN_MS } from './model.ts';

/** The view and metric the card shows: the first view (in declaration order) with a `distinct` metric. */
export function distinctMetric(views: readonly ViewInfo[]): { view: ViewInfo; metric: string } | undefined {
  for (const view of views) {
    const metric = Object.entries(view.metrics).find(([, m]) => m.fn === 'distinct')?.[0];
    if (metric !== undefined) return { view, metric };
  }
  return undefined;
}

/** The chart's grain for a view: the grain asked, or the view's own when that is coarser. */
export function uniquesGrain(view: ViewInfo, asked: ChartGrain): ChartGrain {
  const own = view.grain as ChartGrain;
  return GRAIN_MS[own] > GRAIN_MS[asked] ? own : asked;
}

export class UniquesCard {
  private chart: Chart | undefined;
  constructor(
    private readonly card: HTMLElement,
    private readonly plot: HTMLElement,
    private readonly caption: HTMLElement,
  ) {}

  /** Fetches and draws; hides the card when no view has a distinct metric. Failures show in the caption. */
  async refresh(api: Api, views: readonly ViewInfo[], range: { from: string; to: string; grain: ChartGrain }): Promise<void> {
    const pick = distinctMetric(views);
    this.card.hidden = pick === undefined;
    if (!pick) return;
    const grain = uniquesGrain(pick.view, range.grain);
    const base = { from: range.from, to: range.to, groupBy: '' };
    try {
      const [series, total] = await Promise.all([
        api.query(pick.view.name, { ...base, grain }),
        api.query(pick.view.name, { ...base, grain: 'all' }),
      ]);
      this.draw(pick.view, pick.metric, grain, series, total);
    } catch (e) {
      this.plot.dataset.state = 'error';
      this.caption.textContent = `${pick.view.name}.${pick.metric}: ${(e as Error).message}`;
    }
  }

  private draw(view: ViewInfo, metric: string, grain: ChartGrain, series: QueryAnswer, total: QueryAnswer): void {
    this.chart ??= new Chart(this.plot);
    const model = buildModel(view, series, metric, grain);
    this.plot.dataset.state = series.rows.length === 0 ? 'empty' : 'ready';
    this.plot.dataset.metric = metric;
    const overall = total.rows[0]?.[metric];
    this.plot.dataset.total = typeof overall === 'number' ? String(overall) : '0';
    this.chart.render(model);
    this.caption.textContent = [
      `${metric} (${view.name}): ${num(typeof overall === 'number' ? overall : 0)} distinct in range`,
      `per ${grain}, each bucket its own estimate (HyperLogLog, ±1.6 %)`,
    ].join(' · ');
  }
}

/** The demo views of the contract (docs/design.md, "Demo views"), used by `npm start` and the tests. */
import { avg, count, distinct, max, min, sum, type View, view } from './views.ts';

export const DEMO_VIEWS: readonly View[] = [
  view({ name: 'events_by_type', dimensions: ['type'], grain: 'minute', metrics: { events: count() } }),
  view({
    name: 'revenue_by_country',
    filter: { type: 'purchase' },
    dimensions: ['country'],
    grain: 'hour',
    metrics: { orders: count(), revenue: sum('amount'), min_order: min('amount'), max_order: max('amount'), avg_order: avg('amount') },
  }),
  view({
    name: 'page_views',
    filter: { type: 'page_view' },
    dimensions: ['page', 'country'],
    grain: 'minute',
    metrics: { views: count(), load_ms: avg('load_ms'), users: distinct('user') },
  }),
];

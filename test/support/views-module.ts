/** A views file in TypeScript, as `tandem local --views test/support/views-module.ts` takes it. */
import { count, sum, view } from '../../functions/core/views.ts';

export default [
  view({
    name: 'orders_by_plan',
    filter: { type: 'purchase' },
    dimensions: ['plan'],
    grain: 'day',
    metrics: { orders: count(), revenue: sum('amount') },
  }),
];

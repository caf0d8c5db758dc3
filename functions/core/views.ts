/**
 * Views: the one declaration both layers and the merge derive from.
 * A view is data (typed here, loadable from JSON through the same zod schema).
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { GRAINS, type Grain } from './time.ts';

/** Field, dimension and metric names: identifiers, so SQL and DynamoDB keys never need escaping beyond quotes. */
export const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/** Names that the query output or the archive reserve. */
export const RESERVED_NAMES = ['bucket'] as const;

const name = (what: string) =>
  z.string({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a string`) }).regex(NAME_RE, {
    error: (i) => `${what} must be a letter or _ followed by letters, digits or _ (at most 64), received ${JSON.stringify(i.input)}`,
  });

const field = name('field');

// zod reports a bad record key as a bare "Invalid key in record": surface the key schema's own message.
const keyError = {
  error: (i: { code?: string; issues?: readonly { message: string }[] }) => (i.code === 'invalid_key' ? i.issues?.[0]?.message : undefined),
};

export const MetricSchema = z.discriminatedUnion(
  'fn',
  [
    z.object({ fn: z.literal('count') }).strict(),
    z.object({ fn: z.literal('sum'), field }).strict(),
    z.object({ fn: z.literal('min'), field }).strict(),
    z.object({ fn: z.literal('max'), field }).strict(),
    z.object({ fn: z.literal('avg'), field }).strict(),
    z.object({ fn: z.literal('distinct'), field }).strict(),
  ],
  {
    error: (i) =>
      `fn must be one of count, sum, min, max, avg, distinct, received ${JSON.stringify((i.input as { fn?: unknown } | undefined)?.fn)}`,
  },
);
export type Metric = z.infer<typeof MetricSchema>;
export type MetricFn = Metric['fn'];

const FilterValue = z.union([z.string(), z.number().finite(), z.boolean()], {
  error: 'filter values must be strings, finite numbers or booleans',
});

export const ViewSchema = z
  .object({
    name: name('view name'),
    description: z.string().max(500).optional(),
    filter: z.record(field, FilterValue, keyError).optional(),
    dimensions: z.array(name('dimension')).max(8, { error: 'at most 8 dimensions' }),
    grain: z.enum(GRAINS, { error: (i) => `grain must be one of ${GRAINS.join(', ')}, received ${JSON.stringify(i.input)}` }),
    metrics: z
      .record(name('metric name'), MetricSchema, keyError)
      .refine((m) => Object.keys(m).length > 0, { error: 'a view needs at least one metric' }),
  })
  .strict()
  .superRefine((v, ctx) => {
    const seen = new Set<string>();
    v.dimensions.forEach((d, i) => {
      if (seen.has(d)) ctx.addIssue({ code: 'custom', path: ['dimensions', i], message: `dimension "${d}" is listed twice` });
      seen.add(d);
      if ((RESERVED_NAMES as readonly string[]).includes(d))
        ctx.addIssue({ code: 'custom', path: ['dimensions', i], message: `"${d}" is reserved` });
    });
    for (const m of Object.keys(v.metrics)) {
      if ((RESERVED_NAMES as readonly string[]).includes(m))
        ctx.addIssue({ code: 'custom', path: ['metrics', m], message: `"${m}" is reserved` });
      if (seen.has(m)) ctx.addIssue({ code: 'custom', path: ['metrics', m], message: `metric "${m}" has the name of a dimension` });
    }
  });

/** A view as declared (input to the schema). */
export type ViewDeclaration = z.input<typeof ViewSchema>;
/** A validated view. */
export interface View {
  readonly name: string;
  readonly description?: string;
  readonly filter?: Readonly<Record<string, string | number | boolean>>;
  readonly dimensions: readonly string[];
  readonly grain: Grain;
  readonly metrics: Readonly<Record<string, Metric>>;
}

export const ViewsSchema = z.array(ViewSchema).superRefine((views, ctx) => {
  const seen = new Map<string, number>();
  views.forEach((v, i) => {
    const first = seen.get(v.name);
    if (first !== undefined)
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate view name "${v.name}" (also views[${first}])` });
    else seen.set(v.name, i);
  });
});

export interface ViewIssue {
  /** Where the problem is, e.g. `views[1].metrics.revenue.field`. */
  readonly path: string;
  readonly message: string;
}

export class ViewValidationError extends Error {
  constructor(readonly issues: readonly ViewIssue[]) {
    super(`invalid views: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    this.name = 'ViewValidationError';
  }
}

/** Renders a zod path as `root[1].metrics.revenue.field`. */
export function formatPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out;
}

/**
 * Validates views from TypeScript or parsed JSON. Accepts an array or
 * `{ "views": [...] }`. Throws ViewValidationError naming each bad path.
 */
export function parseViews(input: unknown): View[] {
  const list =
    input !== null && typeof input === 'object' && !Array.isArray(input) && 'views' in input ? (input as { views: unknown }).views : input;
  const result = ViewsSchema.safeParse(list);
  if (!result.success) {
    throw new ViewValidationError(result.error.issues.map((i) => ({ path: formatPath('views', i.path), message: i.message })));
  }
  return result.data as View[];
}

/** Parses views from JSON text (a views file). */
export function parseViewsJson(text: string): View[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ViewValidationError([{ path: 'views', message: `is not valid JSON: ${(e as Error).message}` }]);
  }
  return parseViews(data);
}

// Typed helpers: `view({ name, dimensions, grain, metrics: { n: count(), revenue: sum('amount') } })`.
export const count = (): Metric => ({ fn: 'count' });
export const sum = (field: string): Metric => ({ fn: 'sum', field });
export const min = (field: string): Metric => ({ fn: 'min', field });
export const max = (field: string): Metric => ({ fn: 'max', field });
export const avg = (field: string): Metric => ({ fn: 'avg', field });
/** An approximate count of the distinct values of a field (a HyperLogLog sketch, core/hll.ts). */
export const distinct = (field: string): Metric => ({ fn: 'distinct', field });

/** Declares one view, validated at once (errors name `view.<path>`). */
export function view(declaration: ViewDeclaration): View {
  const result = ViewSchema.safeParse(declaration);
  if (!result.success) {
    throw new ViewValidationError(result.error.issues.map((i) => ({ path: formatPath('view', i.path), message: i.message })));
  }
  return result.data as View;
}

/** Fields whose numeric values a view's metrics read (must be finite numbers when present); not `distinct`'s, which reads any text. */
export function metricFields(v: View): string[] {
  return [...new Set(Object.values(v.metrics).flatMap((m) => (m.fn === 'count' || m.fn === 'distinct' ? [] : [m.field])))];
}

/** Fields whose canonical text a view's `distinct` metrics hash, in declaration order. */
export function distinctFields(v: View): string[] {
  return [...new Set(Object.values(v.metrics).flatMap((m) => (m.fn === 'distinct' ? [m.field] : [])))];
}

/** Canonical text of a filter or dimension value: the form both layers compare and group on. */
export function canonicalValue(value: string | number | boolean | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : String(value);
}

/** Does an event's canonical field map pass the view's equality filter? */
export function matchesFilter(v: View, fields: Readonly<Record<string, string | null>>): boolean {
  if (!v.filter) return true;
  for (const [k, want] of Object.entries(v.filter)) {
    if ((fields[k] ?? null) !== canonicalValue(want)) return false;
  }
  return true;
}

export function findView(views: readonly View[], name: string): View | undefined {
  return views.find((v) => v.name === name);
}

/** JSON with the keys of every object sorted: the same text for the same data, whatever order it was written in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * A stable hash (sha-256, hex) of what in a view's declaration changes its
 * rows: name, filter, dimensions (in order: they are the output's order),
 * grain and metrics. Not the description; not the order of keys in the filter
 * or the metrics; no filter is the same as an empty one. A batch version
 * records it per view, so a changed declaration is rebuilt, not incremented.
 */
export function viewFingerprint(v: View): string {
  const declaration = { name: v.name, filter: v.filter ?? {}, dimensions: v.dimensions, grain: v.grain, metrics: v.metrics };
  return createHash('sha256').update(canonicalJson(declaration)).digest('hex');
}

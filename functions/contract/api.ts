/**
 * The bodies of the HTTP API (docs/api.md), one zod schema per request and
 * response with its `z.infer` type. The handlers (functions/api/, the batch
 * routes) return these types; the CLI (bin/) and the dashboard (web/src/,
 * `import type` only) read them; test/unit/contract.test.ts checks every
 * example of docs/api.md against them. The schemas are strict: a field the
 * server does not send is an error, so the documentation cannot drift.
 */
import { z } from 'zod';
import { MAX_EVENTS_PER_REQUEST, MAX_ID_LENGTH, MAX_TYPE_LENGTH } from '../core/events.ts';
import { QUERY_GRAINS } from '../core/time.ts';
import { ViewSchema } from '../core/views.ts';

/** A time in a response: ISO-8601 in UTC with milliseconds (`Date.toISOString`). */
const IsoTime = z.iso.datetime({ precision: 3 });
const Count = z.number().int().nonnegative();

// ---- every route --------------------------------------------------------------------------------

/**
 * The error body of every route and of the gateway: `field` names the field,
 * parameter or header at fault; `requestId` comes with a 5xx (the log line's).
 */
export const ErrorBodySchema = z.strictObject({
  error: z.string(),
  field: z.string().optional(),
  requestId: z.string().optional(),
});
export type ErrorBody = z.infer<typeof ErrorBodySchema>;

// ---- POST /events -------------------------------------------------------------------------------

const FieldValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

/** One event as a producer sends it (the full rules, which depend on the views, are core/events.ts's). */
export const EventSchema = z
  .object({
    id: z.string().min(1).max(MAX_ID_LENGTH).optional(),
    type: z.string().min(1).max(MAX_TYPE_LENGTH),
    ts: z.union([z.string(), z.number()]),
  })
  .catchall(FieldValue);
export type EventInput = z.infer<typeof EventSchema>;

const Events = z.array(EventSchema).min(1).max(MAX_EVENTS_PER_REQUEST);

/** The body of POST /events: one event, an array of events, or `{"events": [...]}`. */
export const EventsRequestSchema = z.union([EventSchema, Events, z.strictObject({ events: Events })]);
export type EventsRequest = z.infer<typeof EventsRequestSchema>;

/** A rejected event: its position in the request, the one field at fault (`event`: the event as a whole) and why. */
export const RejectionSchema = z.strictObject({ index: Count, field: z.string(), message: z.string() });
export type Rejection = z.infer<typeof RejectionSchema>;

/** 200 (all accepted and stored) and 207 (some rejected, the others stored): `ids` of the accepted events, in request order. */
export const EventsAnswerSchema = z.strictObject({ accepted: Count, rejected: z.array(RejectionSchema), ids: z.array(z.string()) });
export type EventsAnswer = z.infer<typeof EventsAnswerSchema>;

/** 400 when no event of the body could be accepted: `field` is the first rejection's. */
export const EventsRefusedSchema = z.strictObject({
  error: z.string(),
  field: z.string().optional(),
  accepted: z.literal(0),
  rejected: z.array(RejectionSchema),
});
export type EventsRefused = z.infer<typeof EventsRefusedSchema>;

/** 503 when accepted events could not be stored: send the events at `notStored` again, with the same ids. */
export const EventsNotStoredSchema = z.strictObject({
  error: z.string(),
  accepted: Count,
  notStored: z.array(Count),
  rejected: z.array(RejectionSchema),
  ids: z.array(z.string()),
});
export type EventsNotStored = z.infer<typeof EventsNotStoredSchema>;

// ---- GET /views, GET /views/{name} --------------------------------------------------------------

/** A view as GET /views lists it: its declaration, loadable again as a views file. */
export const ViewInfoSchema = ViewSchema;
export type ViewInfo = z.infer<typeof ViewInfoSchema>;

export const ViewsAnswerSchema = z.strictObject({ views: z.array(ViewInfoSchema) });
export type ViewsAnswer = z.infer<typeof ViewsAnswerSchema>;

/** A cell of a row: the bucket and dimension values are text (a dimension may be null), metrics numbers (null when undefined). */
export type Cell = string | number | null;
const CellSchema = z.union([z.string(), z.number(), z.null()]);

/** `parts=1`: a row's metrics from each layer alone (for count and sum the two add up to the row). */
export const RowPartsSchema = z.strictObject({
  batch: z.record(z.string(), z.number().nullable()),
  speed: z.record(z.string(), z.number().nullable()),
});
export type RowParts = z.infer<typeof RowPartsSchema>;

/** A row of GET /views/{name}: `bucket`, the grouped dimensions, the metrics, and `parts` with `parts=1`. */
export const QueryRowSchema = z
  .object({ bucket: IsoTime, parts: RowPartsSchema.optional() })
  .catchall(z.union([CellSchema, RowPartsSchema]))
  .superRefine((row, ctx) => {
    for (const [k, v] of Object.entries(row)) {
      if (k !== 'parts' && v !== null && typeof v === 'object') ctx.addIssue({ code: 'custom', path: [k], message: 'must be a cell' });
    }
  });
export type QueryRow = z.infer<typeof QueryRowSchema>;

/** The published batch version a query merged, and its cutoff; null before the first batch. */
export const QueryBatchSchema = z.strictObject({ version: Count, cutoff: IsoTime });

export const QueryAnswerSchema = z.strictObject({
  view: z.string(),
  grain: z.enum(QUERY_GRAINS),
  from: IsoTime,
  to: IsoTime,
  batch: QueryBatchSchema.nullable(),
  rows: z.array(QueryRowSchema),
});
export type QueryAnswer = z.infer<typeof QueryAnswerSchema>;

// ---- batch runs ---------------------------------------------------------------------------------

/** A run id: sortable by start time, valid as a Step Functions execution name. */
export const RUN_ID_RE = /^[A-Za-z0-9_-]{1,80}$/;

export const RUN_STATES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED'] as const;
export type RunState = (typeof RUN_STATES)[number];
export const RUN_STAGES = ['plan', 'views', 'publish', 'done'] as const;
export type RunStage = (typeof RUN_STAGES)[number];

/**
 * The body of POST /batch/runs: `{}` (or none) runs every view as the rule says (an increment,
 * or a rebuild for a new or changed view); `{"rebuild": true}` rebuilds every view from all
 * history, `{"view": "NAME"}` that view. Unknown fields are refused (a misspelt `rebuild` must not
 * silently run an increment).
 */
export const StartRunRequestSchema = z
  .strictObject({
    rebuild: z.boolean({ error: 'rebuild must be true or false' }).optional(),
    view: z.string({ error: 'view must be the name of a view' }).min(1, { error: 'view must be the name of a view' }).optional(),
  })
  .superRefine((b, ctx) => {
    if (b.rebuild === true && b.view !== undefined)
      ctx.addIssue({ code: 'custom', path: ['view'], message: 'view names the one view to rebuild: leave it out with "rebuild": true' });
  });
export type StartRunRequest = z.infer<typeof StartRunRequestSchema>;

/** 202 of POST /batch/runs: the run started, or the one already going (`alreadyRunning`). */
export const StartRunAnswerSchema = z.strictObject({
  id: z.string().regex(RUN_ID_RE),
  state: z.literal('RUNNING'),
  alreadyRunning: z.literal(true).optional(),
});
export type StartRunAnswer = z.infer<typeof StartRunAnswerSchema>;

export const VIEW_MODES = ['increment', 'rebuild'] as const;
export const REBUILD_REASONS = ['requested', 'new view', 'declaration changed', 'storage changed'] as const;

/**
 * One view of a run: rows of the view in the version, SQL and load milliseconds; `mode` (an
 * increment merged into the published version, or a rebuild from all history, with its
 * `reason`) and `written`, the rows the run wrote (base rows; an increment shares untouched blocks).
 */
export const ViewRunSchema = z.strictObject({
  rows: Count,
  sqlMs: z.number(),
  loadMs: z.number(),
  mode: z.enum(VIEW_MODES).optional(),
  reason: z.enum(REBUILD_REASONS).optional(),
  written: Count.optional(),
});
export type ViewRun = z.infer<typeof ViewRunSchema>;

const runFields = {
  id: z.string(),
  state: z.enum(RUN_STATES),
  stage: z.enum(RUN_STAGES),
  startedAt: IsoTime.nullable(),
  finishedAt: IsoTime.nullable(),
  version: Count.nullable(),
  cutoff: IsoTime.nullable(),
  /** The published cutoff when the run planned. */
  previousCutoff: IsoTime.nullable(),
  views: z.record(z.string(), ViewRunSchema),
  /** Milliseconds per stage (plan, stage, verify, publish, retire, total). */
  timings: z.record(z.string(), z.number()),
  /** What the run read of the raw archive. */
  archive: z
    .strictObject({
      objects: Count,
      records: Count,
      extraObjects: Count,
      /** The raw objects of the run's arrival range, their lines and their stored (gzip) bytes. */
      rawObjectsRead: Count.optional(),
      rawRowsRead: Count.optional(),
      rawBytesRead: Count.optional(),
      /** Arrival hours of the range read from Parquet (compacted) instead of raw JSON. */
      compactedHours: Count.optional(),
    })
    .optional(),
  /** The compaction after the publish: hours compacted, hours that failed (retried by the next run), the first error. */
  compaction: z.strictObject({ hours: Count, failed: Count, error: z.string().optional() }).optional(),
  /** Why the run was skipped, or which shard held the cutoff back. */
  note: z.string().optional(),
  error: z.string().optional(),
};

/** GET /batch/runs/{id}. */
export const RunAnswerSchema = z.strictObject(runFields);
export type RunAnswer = z.infer<typeof RunAnswerSchema>;

/** The body of POST /batch/rollback (other fields are ignored). */
export const RollbackRequestSchema = z.object({
  version: z
    .number({ error: 'version must be a whole number' })
    .int({ error: 'version must be a whole number' })
    .positive({ error: 'version must be positive' }),
});
export type RollbackRequest = z.infer<typeof RollbackRequestSchema>;

/** The published pointer (200 of POST /batch/rollback). */
export const PointerAnswerSchema = z.strictObject({
  version: Count,
  cutoff: IsoTime,
  publishedAt: IsoTime,
  runId: z.string(),
  views: z.record(z.string(), z.strictObject({ rows: Count })),
  /** Set by a rollback: the version that was current before it. */
  rolledBackFrom: Count.optional(),
});
export type PointerAnswer = z.infer<typeof PointerAnswerSchema>;

// ---- GET /status --------------------------------------------------------------------------------

/** The `speed / <shard>` item: the last record the speed layer applied on a shard, and its age (`lagMs`). */
export const SpeedShardSchema = z.strictObject({
  shard: z.string(),
  seq: z.string().optional(),
  arrival: IsoTime.optional(),
  updatedAt: IsoTime.optional(),
  lagMs: z.number().optional(),
});
export type SpeedShard = z.infer<typeof SpeedShardSchema>;

/** The `checkpoint / <shard>` item: the raw archive holds every record of the shard through `seq`. */
export const ArchiveShardSchema = z.strictObject({
  shard: z.string(),
  seq: z.string().optional(),
  arrival: IsoTime.optional(),
  updatedAt: IsoTime.optional(),
  records: Count.optional(),
});
export type ArchiveShard = z.infer<typeof ArchiveShardSchema>;

export const StatusAnswerSchema = z.strictObject({
  now: IsoTime,
  /** The published pointer; null before the first batch. */
  batch: z
    .strictObject({
      version: Count,
      cutoff: IsoTime,
      lagSeconds: Count,
      publishedAt: IsoTime.optional(),
      runId: z.string().optional(),
    })
    .nullable(),
  /** The newest run, as GET /batch/runs/{id} shows it, with its duration (null while it runs). */
  lastRun: z.strictObject({ ...runFields, durationMs: z.number().nullable() }).nullable(),
  speed: z.strictObject({ shards: z.array(SpeedShardSchema) }),
  archive: z.strictObject({ shards: z.array(ArchiveShardSchema) }),
  windowSeconds: z.number(),
  dedupHorizonSeconds: z.number(),
  maxBatchLagSeconds: z.number(),
  /** Records both consumers set aside. */
  poison: z.strictObject({ count: Count }),
});
export type StatusAnswer = z.infer<typeof StatusAnswerSchema>;
export type LastRun = NonNullable<StatusAnswer['lastRun']>;

// ---- GET /health --------------------------------------------------------------------------------

export const HealthAnswerSchema = z.strictObject({ status: z.literal('ok') });
export type HealthAnswer = z.infer<typeof HealthAnswerSchema>;

// ---- the routes ---------------------------------------------------------------------------------

/**
 * Each route of routes.ts ROUTES (`<method> <resource>`) with its request body
 * (when it reads one) and its answers by status. Statuses every route may
 * answer with the error body (401, 403, 405, 413, 415, 500, 502, 503, 504) are
 * left out unless the route itself sends them.
 */
export const API = {
  'GET /health': { responses: { 200: HealthAnswerSchema } },
  'POST /events': {
    request: EventsRequestSchema,
    responses: {
      200: EventsAnswerSchema,
      207: EventsAnswerSchema,
      400: z.union([EventsRefusedSchema, ErrorBodySchema]),
      413: ErrorBodySchema,
      415: ErrorBodySchema,
      503: EventsNotStoredSchema,
    },
  },
  'GET /views': { responses: { 200: ViewsAnswerSchema } },
  'GET /views/{name}': { responses: { 200: QueryAnswerSchema, 400: ErrorBodySchema, 404: ErrorBodySchema } },
  'GET /status': { responses: { 200: StatusAnswerSchema } },
  'POST /batch/runs': { request: StartRunRequestSchema, responses: { 202: StartRunAnswerSchema, 400: ErrorBodySchema } },
  'GET /batch/runs/{id}': { responses: { 200: RunAnswerSchema, 400: ErrorBodySchema, 404: ErrorBodySchema } },
  'POST /batch/rollback': {
    request: RollbackRequestSchema,
    responses: { 200: PointerAnswerSchema, 400: ErrorBodySchema, 404: ErrorBodySchema, 409: ErrorBodySchema },
  },
} as const satisfies Record<string, { request?: z.ZodType; responses: Record<number, z.ZodType> }>;

export type RouteKey = keyof typeof API;

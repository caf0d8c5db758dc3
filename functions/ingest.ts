/**
 * POST /events (API Gateway REST v1 proxy): validate, assign ids, PutRecords.
 * 200 all accepted and stored; 207 some rejected, the rest stored; 400 none
 * acceptable or not JSON; 413 too large; 503 when some accepted events could
 * not be stored (the body names their indices; ids make the client's retry safe).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { clients } from './adapters/clients.ts';
import { type ApiHandler, errorBody, guarded, HttpError, json, readJsonBody } from './api/http.ts';
import { type KinesisPut, type PutOptions, putEntries, toEntry } from './api/put-events.ts';
import { type Config, loadConfig } from './config.ts';
import { isBodyError, validateEvents, withId } from './core/events.ts';
import type { View } from './core/views.ts';
import { MAX_EVENTS_PER_REQUEST } from './routes.ts';

export interface IngestDeps {
  readonly kinesis: KinesisPut;
  readonly streamName: string;
  readonly views: readonly View[];
  readonly logger: Logger;
  /** Counts accepted, rejected and unstored events and resent entries (flushed after every request). */
  readonly metrics?: Metrics;
  readonly put?: PutOptions;
}

/** How many events a body holds, by the contract's three shapes (so "too many" is a 413, before validation). */
function eventCount(body: unknown): number {
  if (Array.isArray(body)) return body.length;
  if (body !== null && typeof body === 'object') {
    const events = (body as { events?: unknown }).events;
    if (Array.isArray(events)) return events.length;
  }
  return 1;
}

/** The ingest core for given clients and views (tests inject a wrapped Kinesis client here). */
export function createIngestHandler(deps: IngestDeps): ApiHandler {
  const handle = ingestCore(deps);
  if (!deps.metrics) return handle;
  const metrics = deps.metrics;
  return async (event, context) => {
    try {
      return await handle(event, context);
    } finally {
      metrics.publishStoredMetrics();
    }
  };
}

function ingestCore(deps: IngestDeps): ApiHandler {
  const count = (name: string, n: number) => {
    if (n > 0) deps.metrics?.addMetric(name, MetricUnit.Count, n);
  };
  return guarded(deps.logger, async (event: APIGatewayProxyEvent, context: Context) => {
    const body = readJsonBody(event);
    const n = eventCount(body);
    if (n > MAX_EVENTS_PER_REQUEST) {
      throw new HttpError(413, `at most ${MAX_EVENTS_PER_REQUEST} events per request, received ${n}`, 'events');
    }
    const result = validateEvents(body, deps.views, { maxEvents: MAX_EVENTS_PER_REQUEST });
    if (isBodyError(result)) throw new HttpError(400, result.error.message, result.error.field ?? 'body');
    const { rejected } = result;
    count('EventsRejected', rejected.length);
    if (result.accepted.length === 0) {
      const first = rejected[0];
      return json(400, errorBody('no event could be accepted', first?.field, { accepted: 0, rejected }));
    }
    const events = result.accepted.map(({ index, event: e }) => ({ index, event: withId(e) }));
    const outcome = await putEntries(
      deps.kinesis,
      deps.streamName,
      events.map(({ index, event: e }) => toEntry(index, e)),
      {
        ...deps.put,
        remainingMs: () =>
          typeof context?.getRemainingTimeInMillis === 'function' ? context.getRemainingTimeInMillis() : Number.POSITIVE_INFINITY,
        onRetry: (info) => deps.logger.warn('PutRecords entries failed, resending them', info),
      },
    );
    const ids = events.map(({ event: e }) => e.id);
    count('EventsAccepted', outcome.stored.length);
    count('EventsNotStored', outcome.failed.length);
    count('PutRecordsResent', outcome.resent);
    if (outcome.failed.length > 0) {
      deps.logger.error('accepted events not stored', {
        notStored: outcome.failed.length,
        codes: [...new Set(outcome.failed.map((f) => f.code))],
      });
      return json(
        503,
        errorBody(
          `${outcome.failed.length} of ${events.length} accepted events could not be stored; send those again (with the same ids, a retry is not double counted)`,
          undefined,
          {
            accepted: outcome.stored.length,
            notStored: outcome.failed.map((f) => f.index),
            rejected,
            ids,
          },
        ),
        { 'retry-after': '1' },
      );
    }
    return json(rejected.length > 0 ? 207 : 200, { accepted: events.length, rejected, ids });
  });
}

const logger = new Logger({ serviceName: 'tandem-ingest' });
const metrics = new Metrics({ namespace: 'Tandem', serviceName: 'ingest' });
const config: Config = loadConfig();

/** The Lambda entry point: module-scope clients and views, as Powertools examples do. */
export const handler: ApiHandler = createIngestHandler({
  kinesis: clients().kinesis,
  get streamName() {
    return config.streamName;
  },
  views: config.views,
  logger,
  metrics,
});

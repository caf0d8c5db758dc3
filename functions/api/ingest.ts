/**
 * POST /events (API Gateway REST v1 proxy): validate, assign ids, PutRecords.
 * 200 all accepted and stored; 207 some rejected, the rest stored; 400 none
 * acceptable or not JSON; 413 too large; 503 when some accepted events could
 * not be stored (the body names their indices; ids make the client's retry safe).
 */
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import type { EventsAnswer, EventsNotStored, EventsRefused } from '../contract/api.ts';
import { INGEST_METRICS } from '../contract/telemetry.ts';
import { isBodyError, MAX_EVENTS_PER_REQUEST, validateEvents, withId } from '../core/events.ts';
import type { View } from '../core/views.ts';
import { type ApiHandler, errorBody, guarded, HttpError, json, readJsonBody } from './http.ts';
import { type KinesisPut, type PutOptions, putEntries, toEntry } from './put-events.ts';

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

/** The ingest handler for given clients and views (tests inject a wrapped Kinesis client here). */
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
    count(INGEST_METRICS.eventsRejected, rejected.length);
    if (result.accepted.length === 0) {
      const refused: EventsRefused = errorBody('no event could be accepted', rejected[0]?.field, { accepted: 0 as const, rejected });
      return json(400, refused);
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
    count(INGEST_METRICS.eventsAccepted, outcome.stored.length);
    count(INGEST_METRICS.eventsNotStored, outcome.failed.length);
    count(INGEST_METRICS.putRecordsResent, outcome.resent);
    if (outcome.failed.length > 0) {
      deps.logger.error('accepted events not stored', {
        notStored: outcome.failed.length,
        codes: [...new Set(outcome.failed.map((f) => f.code))],
      });
      const notStored: EventsNotStored = errorBody(
        `${outcome.failed.length} of ${events.length} accepted events could not be stored; ` +
          `send those again (with the same ids, a retry is not double counted)`,
        undefined,
        { accepted: outcome.stored.length, notStored: outcome.failed.map((f) => f.index), rejected, ids },
      );
      return json(503, notStored, { 'retry-after': '1' });
    }
    const answer: EventsAnswer = { accepted: events.length, rejected, ids };
    return json(rejected.length > 0 ? 207 : 200, answer);
  });
}

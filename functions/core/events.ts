/**
 * The event contract of ingest (docs/api.md, POST /events): which
 * request bodies and which events are accepted, and for each rejected event the
 * one field at fault with a message a person understands.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { DecimalRangeError, decimalFromNumber } from './decimal.ts';
import { parseTime } from './time.ts';
import { canonicalValue, matchesFilter, metricFields, NAME_RE, type View } from './views.ts';

export type FieldValue = string | number | boolean | null;

/** A validated event: `ts` keeps the value the producer sent (ISO-8601 text or epoch ms). */
export interface Event {
  readonly id?: string;
  readonly type: string;
  readonly ts: string | number;
  readonly [field: string]: FieldValue | undefined;
}

/** An event ready for the stream: ingest has assigned an id when the producer sent none. */
export type IdentifiedEvent = Event & { readonly id: string };

export interface Rejection {
  /** Position of the event in the request (0 for a single event). */
  readonly index: number;
  /** The offending field (`event` when the event as a whole is at fault). */
  readonly field: string;
  readonly message: string;
}

export interface BodyError {
  readonly error: { readonly field?: string; readonly message: string };
}

export interface EventsResult {
  readonly accepted: { readonly index: number; readonly event: Event }[];
  readonly rejected: Rejection[];
}

/** Most events in one POST /events. */
export const MAX_EVENTS_PER_REQUEST = 500;
/** Largest request body accepted (5 MB), also after gzip decoding. */
export const MAX_BODY_BYTES = 5 * 1024 * 1024;

/** Largest serialized event (UTF-8 bytes of its JSON); Kinesis takes 1 MB a record, this keeps records small. */
export const MAX_EVENT_BYTES = 64 * 1024;
/** Length limits of `id` and `type`. */
export const MAX_ID_LENGTH = 128;
export const MAX_TYPE_LENGTH = 128;

/** A new event id, for events sent without one. */
export function assignId(): string {
  return randomUUID();
}

/** The event with its own id, or a new one when it has none. */
export function withId(event: Event): IdentifiedEvent {
  return event.id === undefined ? { ...event, id: assignId() } : (event as IdentifiedEvent);
}

const kindOf = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v === 'number' ? String(v) : typeof v;

const text = (max: number) =>
  z
    .string({ error: (i) => (i.input === undefined ? 'is required' : `must be a string, received ${kindOf(i.input)}`) })
    .min(1, { error: 'must not be empty' })
    .max(max, { error: (i) => `must be at most ${max} characters, received ${(i.input as string).length}` });

// parseTime is the one reader of event time (ingest, both consumers): its message is the message.
const Ts = z
  .custom<string | number>(() => true)
  .superRefine((v, ctx) => {
    if (v === undefined) return void ctx.addIssue({ code: 'custom', message: 'is required' });
    try {
      parseTime(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });

const FieldValueSchema = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: (i) => {
    const v = i.input;
    if (typeof v === 'number') return `must be a finite number, received ${String(v)}`;
    if (Array.isArray(v)) return 'must be a string, number, boolean or null; arrays are not accepted (send one field per value)';
    if (v !== null && typeof v === 'object')
      return 'must be a string, number, boolean or null; nested objects are not accepted (flatten them into top-level fields)';
    return `must be a string, number, boolean or null, received ${kindOf(v)}`;
  },
});

/**
 * The one event schema for a set of views: the fixed fields, scalar values for
 * every other field, and a finite number that fits DECIMAL(38,9) inputs for each
 * metric field of a view whose filter matches the event.
 */
function eventSchema(views: readonly View[]) {
  const metricViews = views.map((v) => ({ view: v, fields: metricFields(v) })).filter((m) => m.fields.length > 0);
  return z
    .object({
      id: text(MAX_ID_LENGTH).optional(),
      type: text(MAX_TYPE_LENGTH),
      ts: Ts,
    })
    .catchall(FieldValueSchema)
    .superRefine((e, ctx) => {
      const fields: Record<string, string | null> = {};
      for (const [k, v] of Object.entries(e)) fields[k] = canonicalValue(v as FieldValue);
      const checked = new Set<string>();
      for (const { view, fields: wanted } of metricViews) {
        if (!matchesFilter(view, fields)) continue;
        for (const f of wanted) {
          const v = e[f];
          if (v === undefined || v === null || checked.has(f)) continue;
          checked.add(f);
          const message = metricValueProblem(v, view.name);
          if (message) ctx.addIssue({ code: 'custom', path: [f], message });
        }
      }
    });
}

function metricValueProblem(v: FieldValue, viewName: string): string | undefined {
  if (typeof v !== 'number') return `must be a number (view "${viewName}" aggregates it), received ${typeof v} ${JSON.stringify(v)}`;
  try {
    decimalFromNumber(v);
    return undefined;
  } catch (e) {
    if (e instanceof DecimalRangeError) return `${e.message}, more than view "${viewName}" can aggregate exactly`;
    throw e;
  }
}

// One compiled schema per views array: ingest validates with the same views for the life of a container.
const schemas = new WeakMap<readonly View[], ReturnType<typeof eventSchema>>();
function schemaFor(views: readonly View[]) {
  let s = schemas.get(views);
  if (!s) {
    s = eventSchema(views);
    schemas.set(views, s);
  }
  return s;
}

/** Validates one event: the event, or the one field at fault and why. */
export function validateEvent(input: unknown, views: readonly View[]): { event: Event } | { field: string; message: string } {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { field: 'event', message: `must be a JSON object, received ${kindOf(input)}` };
  }
  // Names first, on the input itself: zod's output drops a `__proto__` key silently.
  for (const k of Object.keys(input)) {
    // An empty key cannot name itself: report the event, so every rejection names a field.
    if (k === '') return { field: 'event', message: 'has a field with an empty name' };
    if (!NAME_RE.test(k)) {
      return { field: k, message: 'is not a valid field name: use a letter or _ followed by letters, digits or _ (at most 64 characters)' };
    }
    if (k === '__proto__') return { field: k, message: 'is a reserved name' };
  }
  const bytes = Buffer.byteLength(JSON.stringify(input), 'utf8');
  if (bytes > MAX_EVENT_BYTES) return { field: 'event', message: `is ${bytes} bytes as JSON, more than the ${MAX_EVENT_BYTES} allowed` };
  const result = schemaFor(views).safeParse(input);
  if (result.success) return { event: result.data as Event };
  const issue = result.error.issues[0]!;
  return { field: issue.path.length > 0 ? String(issue.path[0]) : 'event', message: issue.message };
}

/**
 * Validates a POST /events body: one event, an array of events, or
 * `{"events": [...]}`. A body-level error when there is nothing to validate or
 * too much; else each event accepted or rejected on its own.
 */
export function validateEvents(body: unknown, views: readonly View[], opts: { maxEvents?: number } = {}): EventsResult | BodyError {
  const maxEvents = opts.maxEvents ?? MAX_EVENTS_PER_REQUEST;
  let list: unknown[];
  let listField: string | undefined;
  if (Array.isArray(body)) list = body;
  else if (body !== null && typeof body === 'object') {
    const wrapper = body as Record<string, unknown>;
    if ('events' in wrapper && (Array.isArray(wrapper.events) || !('type' in wrapper))) {
      if (!Array.isArray(wrapper.events))
        return { error: { field: 'events', message: `must be an array of events, received ${kindOf(wrapper.events)}` } };
      list = wrapper.events;
      listField = 'events';
    } else list = [body];
  } else {
    return {
      error: { message: `the body must be a JSON object (one event or {"events": [...]}) or an array of events, received ${kindOf(body)}` },
    };
  }
  if (list.length === 0) return { error: { ...(listField && { field: listField }), message: 'contains no events' } };
  if (list.length > maxEvents) {
    return {
      error: { ...(listField && { field: listField }), message: `at most ${maxEvents} events per request, received ${list.length}` },
    };
  }
  const accepted: { index: number; event: Event }[] = [];
  const rejected: Rejection[] = [];
  list.forEach((item, index) => {
    const r = validateEvent(item, views);
    if ('event' in r) accepted.push({ index, event: r.event });
    else rejected.push({ index, field: r.field, message: r.message });
  });
  return { accepted, rejected };
}

export function isBodyError(r: EventsResult | BodyError): r is BodyError {
  return 'error' in r;
}

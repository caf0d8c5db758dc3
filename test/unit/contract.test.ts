/**
 * docs/api.md against the contract's schemas (functions/contract/api.ts): every
 * JSON block of the page is an example body, announced by the comment line
 * `<!-- example: <METHOD> <resource> <status | request> -->` (or
 * `<!-- example: error <status> -->` for the error body any route may answer)
 * right above it, and every `curl -d '...'` / `echo '...' | gzip` body is a
 * request of its route. An unannounced JSON block, an announcement without a
 * block, or fewer examples than the page had when this test was written fail,
 * so an example cannot silently drop out of the check.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API, ErrorBodySchema, type RouteKey } from '../../functions/contract/api.ts';
import { ROUTES, resolveRoute } from '../../functions/contract/routes.ts';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '../../docs/api.md');
const text = readFileSync(DOC, 'utf8');

/** The page's examples when this test was written: more is fine, fewer means some went unchecked. */
const MIN_JSON_EXAMPLES = 19;
const MIN_CURL_BODIES = 5;

interface Block {
  readonly lang: string;
  readonly body: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** The `<!-- example: ... -->` text right above the fence (blank lines between allowed). */
  readonly example: string | undefined;
}

const MARKER = /^<!--\s*example:\s*(.+?)\s*-->$/;

function fencedBlocks(markdown: string): { blocks: Block[]; strayMarkers: number[] } {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  const strayMarkers: number[] = [];
  let pending: { example: string; line: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const marker = MARKER.exec(line);
    if (marker) {
      if (pending) strayMarkers.push(pending.line);
      pending = { example: marker[1]!, line: i + 1 };
      continue;
    }
    const open = /^```(\S*)/.exec(line);
    if (open) {
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) body.push(lines[i]!);
      blocks.push({ lang: open[1]!, body: body.join('\n'), line: start + 1, example: pending?.example });
      pending = undefined;
      continue;
    }
    // Only blank lines may stand between an announcement and its block.
    if (line !== '' && pending) {
      strayMarkers.push(pending.line);
      pending = undefined;
    }
  }
  if (pending) strayMarkers.push(pending.line);
  return { blocks, strayMarkers };
}

/** The schema an announcement names. */
function schemaOf(example: string): z.ZodType {
  const error = /^error (\d{3})$/.exec(example);
  if (error) return ErrorBodySchema;
  const m = /^(GET|POST) (\S+) (request|\d{3})$/.exec(example);
  if (!m) throw new Error(`"${example}" is not "<METHOD> <resource> <status|request>" nor "error <status>"`);
  const key = `${m[1]} ${m[2]}` as RouteKey;
  const route: { request?: z.ZodType; responses: Record<number, z.ZodType> } | undefined = API[key];
  if (!route) throw new Error(`"${example}": no route ${key} in the contract`);
  const schema = m[3] === 'request' ? route.request : route.responses[Number(m[3])];
  if (!schema) throw new Error(`"${example}": the contract has no ${m[3]} body for ${key}`);
  return schema;
}

const problems = (schema: z.ZodType, value: unknown): string[] => {
  const r = schema.safeParse(value);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
};

const { blocks, strayMarkers } = fencedBlocks(text);
const examples = blocks.filter((b) => b.lang === 'json');

/** A shell block's commands: `\`-continued lines joined; a newline inside single quotes belongs to its command. */
function shellCommands(script: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  const joined = script.replace(/\\\n/g, ' ');
  for (const c of joined) {
    if (c === "'") quoted = !quoted;
    if (c === '\n' && !quoted) {
      out.push(current);
      current = '';
    } else current += c;
  }
  return [...out, current];
}

/** Request bodies of the shell examples: `curl ... -d '<json>'` and `echo '<json>' | gzip | curl ...`, with the route. */
function curlBodies(): { route: string; body: string; line: number }[] {
  const out: { route: string; body: string; line: number }[] = [];
  for (const b of blocks.filter((x) => x.lang === 'sh')) {
    for (const command of shellCommands(b.body)) {
      if (!command.includes('curl')) continue;
      const body = /-d '([^']*)'/.exec(command)?.[1] ?? /echo '([^']*)' \| gzip/.exec(command)?.[1];
      if (body === undefined) continue;
      const path = /"\$API(\/[^"?]*)/.exec(command)?.[1];
      const method = /-X (GET|POST)/.exec(command)?.[1] ?? 'GET';
      const resolved = path === undefined ? undefined : resolveRoute({ httpMethod: method, path });
      out.push({ route: resolved?.route ? `${method} ${resolved.resource}` : `${method} ${path}`, body, line: b.line });
    }
  }
  return out;
}

describe('docs/api.md against the contract', () => {
  it('announces every JSON block, and every announcement has its block', () => {
    expect(strayMarkers).toEqual([]);
    expect(examples.filter((b) => b.example === undefined).map((b) => b.line)).toEqual([]);
    expect(blocks.filter((b) => b.example !== undefined && b.lang !== 'json').map((b) => b.line)).toEqual([]);
    expect(examples.length).toBeGreaterThanOrEqual(MIN_JSON_EXAMPLES);
  });

  it.each(examples.map((b) => [`${b.example} (line ${b.line})`, b] as const))('%s matches its schema', (_, b) => {
    let value: unknown;
    expect(() => {
      value = JSON.parse(b.body);
    }, `line ${b.line}: not JSON`).not.toThrow();
    expect(problems(schemaOf(b.example!), value)).toEqual([]);
  });

  it('documents a success answer of every route', () => {
    const documented = new Set(examples.map((b) => /^(\S+ \S+) 2\d\d$/.exec(b.example!)?.[1]).filter(Boolean));
    expect(Object.keys(API).filter((k) => !documented.has(k))).toEqual([]);
  });

  it('every curl body is a valid request of its route', () => {
    const bodies = curlBodies();
    expect(bodies.length).toBeGreaterThanOrEqual(MIN_CURL_BODIES);
    for (const { route, body, line } of bodies) {
      const schema = (API[route as RouteKey] as { request?: z.ZodType } | undefined)?.request;
      expect(schema, `block at line ${line}: ${route} takes no body`).toBeDefined();
      expect(problems(schema!, JSON.parse(body)), `block at line ${line}`).toEqual([]);
    }
  });
});

describe('the contract', () => {
  it('describes exactly the routes of the route table', () => {
    expect(Object.keys(API).sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
  });

  it('refuses what the server never sends', () => {
    const run = API['GET /batch/runs/{id}'].responses[200];
    const ok = {
      id: 'run-1',
      state: 'FAILED',
      stage: 'done',
      startedAt: '2025-01-07T09:14:00.020Z',
      finishedAt: '2025-01-07T09:14:02.160Z',
      version: null,
      cutoff: null,
      previousCutoff: null,
      views: {},
      timings: {},
      error: 'boom',
    };
    expect(problems(run, ok)).toEqual([]);
    expect(problems(run, { ...ok, reason: 'boom' })).not.toEqual([]);
    expect(problems(API['POST /batch/runs'].responses[202], { runId: 'run-1', state: 'RUNNING' })).not.toEqual([]);
    expect(problems(API['GET /views/{name}'].responses[200].shape.rows.element, { bucket: '...', n: 1 })).not.toEqual([]);
  });
});

describe('resolveRoute', () => {
  it("takes API Gateway's resource and path parameters when the event has them", () => {
    const r = resolveRoute({ httpMethod: 'GET', path: '/prod/views/a%20b', resource: '/views/{name}', pathParameters: { name: 'a b' } });
    expect(r).toMatchObject({ resource: '/views/{name}', params: { name: 'a b' }, route: { handler: 'query' } });
  });

  it('matches the path otherwise (also behind a catch-all proxy resource), decoding parameters', () => {
    for (const resource of [undefined, null, '/{proxy+}']) {
      const r = resolveRoute({ httpMethod: 'GET', path: '/batch/runs/run-1%5F2', resource });
      expect(r).toMatchObject({ resource: '/batch/runs/{id}', params: { id: 'run-1_2' }, route: { handler: 'batchApi' } });
    }
    expect(() => resolveRoute({ httpMethod: 'GET', path: '/views/%E0' })).toThrow(URIError);
  });

  it('names the resource and its routes when the method is not routed there, and nothing for an unknown path', () => {
    const r = resolveRoute({ httpMethod: 'DELETE', path: '/views' });
    expect(r?.route).toBeUndefined();
    expect(r?.resource).toBe('/views');
    expect(r?.routes.map((x) => x.method)).toEqual(['GET']);
    expect(resolveRoute({ httpMethod: 'GET', path: '/nope' })).toBeUndefined();
    expect(resolveRoute({ httpMethod: 'GET', path: '/views/a/b' })).toBeUndefined();
  });
});

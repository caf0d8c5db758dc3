/**
 * The local cloud enforces the deployed IAM policies (local/iam): with the
 * stack's own template the whole path works (ingest, speed, archive, a batch
 * run, queries); with one grant removed in lib/ the function that needs it
 * fails as it would in AWS, with AccessDeniedException naming the action and
 * the resource. The grant is removed at its source: lib/common.ts's
 * grantTableReadWrite skips the speed layer's dedup table (that one call of
 * lib/speed-layer.ts), everything else is the real lib/ code path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import type { CfnTemplate } from '../../local/iam/index.ts';

vi.mock('../../lib/common.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../lib/common.ts')>();
  const { Grant } = await import('aws-cdk-lib/aws-iam');
  return {
    ...real,
    grantTableReadWrite: (table: dynamodb.ITable, grantee: iam.IGrantable, opts?: { scan?: boolean }) =>
      (globalThis as { dropDedupGrant?: boolean }).dropDedupGrant && table.node.id === 'DedupTable'
        ? Grant.drop(grantee, 'removed by test/integration/iam.test.ts')
        : real.grantTableReadWrite(table, grantee, opts),
  };
});

const KEY = 'iam-test-key-0123456789';
let cloud: LocalCloud | undefined;
let dataDir: string | undefined;
afterEach(async () => {
  await cloud?.stop();
  cloud = undefined;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  delete process.env.TANDEM_CUTOFF_MARGIN_SECONDS;
  // The handlers keep their clients at module scope (as in a Lambda container): the next
  // local cloud, with emulators on other ports, needs them imported afresh.
  vi.resetModules();
});

async function start(template?: CfnTemplate): Promise<LocalCloud> {
  dataDir = mkdtempSync(join(tmpdir(), 'tandem-iam-'));
  cloud = await startLocalCloud({
    port: 0,
    demo: false,
    batchEverySeconds: null,
    windowSeconds: 1,
    dataDir,
    apiKey: KEY,
    mappings: { speed: { pollIntervalMs: 100 }, archive: { maxBatchingWindowMs: 200, pollIntervalMs: 100 } },
    ...(template ? { iam: { template } } : {}),
    logger: { info: () => undefined, warn: () => undefined, error: (m, ...x) => console.error(m, ...x) },
  });
  return cloud;
}

async function call(c: LocalCloud, method: string, path: string, body?: unknown) {
  const r = await fetch(`${c.url}${path}`, {
    method,
    headers: { 'x-api-key': KEY, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

type Denied = { function: string; action: string; resource: string; message: string };
const iamStats = (c: LocalCloud) => (c.stats() as { iam?: { denied: number; recent: Denied[] } }).iam;
const event = (id: string) => ({ id, type: 'purchase', ts: new Date(Date.now() - 60_000).toISOString(), country: 'DE', amount: 12.5 });

describe('the local cloud enforces the deployed IAM policies', () => {
  it('with the stack template: ingest, speed, archive, a batch run and queries all pass the check', async () => {
    process.env.TANDEM_CUTOFF_MARGIN_SECONDS = '0';
    const c = await start();
    expect(await call(c, 'POST', '/events', [event('iam-1'), event('iam-2')])).toMatchObject({ status: 200 });
    await c.idle();
    const run = await call(c, 'POST', '/batch/runs', {});
    expect(run.status).toBe(202);
    let state = 'RUNNING';
    for (let i = 0; i < 120 && state === 'RUNNING'; i++) {
      await new Promise((r) => setTimeout(r, 250));
      state = String((await call(c, 'GET', `/batch/runs/${String(run.body.id)}`)).body.state);
    }
    expect(state).toBe('SUCCEEDED');
    expect((await call(c, 'GET', '/status')).status).toBe(200);
    const fns = c.stats().functions as Record<string, { errors: number }>;
    for (const [name, s] of Object.entries(fns)) expect({ name, errors: s.errors }).toEqual({ name, errors: 0 });
    expect(iamStats(c)).toEqual({ denied: 0, recent: [] });
  });

  it('with one grant removed in lib/: the speed function fails with AccessDeniedException naming action and resource', async () => {
    const { synthTandem } = await import('../construct/synth.ts');
    (globalThis as { dropDedupGrant?: boolean }).dropDedupGrant = true;
    let template: CfnTemplate;
    try {
      template = synthTandem({}, undefined, 'IamVariant').template.toJSON() as CfnTemplate;
    } finally {
      delete (globalThis as { dropDedupGrant?: boolean }).dropDedupGrant;
    }
    // The speed handler logs every failed batch at ERROR: quiet here, the stats tell.
    process.env.POWERTOOLS_LOG_LEVEL = 'CRITICAL';
    const c = await start(template).finally(() => delete process.env.POWERTOOLS_LOG_LEVEL);
    expect(await call(c, 'POST', '/events', [event('iam-3')])).toMatchObject({ status: 200 });
    for (let i = 0; i < 80 && !iamStats(c)?.denied; i++) await new Promise((r) => setTimeout(r, 250));
    const denial = iamStats(c)?.recent[0];
    expect(denial).toMatchObject({ function: 'tandem-speed', resource: 'arn:aws:dynamodb:us-east-1:000000000000:table/tandem-dedup' });
    // The exact text AWS gives an assumed role's call that no identity-based policy allows.
    expect(denial?.message).toMatch(
      /^User: arn:aws:sts::000000000000:assumed-role\/Tandem-TandemSpeedFunctionRole\w+\/tandem-speed is not authorized to perform: (dynamodb:\w+) on resource: arn:aws:dynamodb:us-east-1:000000000000:table\/tandem-dedup because no identity-based policy allows the \1 action$/,
    );
    // Nothing else is denied: the archive, with all its grants, archives the same event.
    await c.idle(['archive']);
    expect(iamStats(c)?.recent.every((d) => d.function === 'tandem-speed' && d.resource.endsWith('table/tandem-dedup'))).toBe(true);
    expect((c.stats().functions as Record<string, { errors: number }>).archive!.errors).toBe(0);
  });
});

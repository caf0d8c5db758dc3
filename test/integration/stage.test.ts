/**
 * Staging raw objects for the DuckDB engine: a body stream cut mid-read (Node's
 * `aborted`) is fetched again instead of failing the batch run (the simulation
 * campaign's seed 47, docs/reliability.md). The cut is
 * injected by a wrapper around the real S3 client (s3rver behind it). And a
 * run stages only the arrival hours of its range that the archive recorded.
 */

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawObjectKey } from '../../functions/archive/layout.ts';
import { stageObjects } from '../../functions/batch/stage.ts';
import { padSeq } from '../../functions/core/record.ts';
import { startTestCloud, type TestCloud } from '../support/cloud.ts';

const HOUR = 3_600_000;
const T0 = Date.UTC(2030, 0, 15, 10, 0, 0);
let cloud: TestCloud;
let dir: string;

/** The real client, whose first `cuts` GetObject bodies fail mid-read as a reset connection does. */
function cuttingBodies(s3: S3Client, cuts: number): { client: S3Client; gets: () => number } {
  let gets = 0;
  const client = new Proxy(s3, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: unknown) => {
        const out = await target.send(command as GetObjectCommand);
        if (command instanceof GetObjectCommand && gets++ < cuts) {
          const body = (out as { Body?: { transformToByteArray(): Promise<Uint8Array> } }).Body!;
          body.transformToByteArray = async () => {
            throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
          };
        }
        return out;
      };
    },
  });
  return { client, gets: () => gets };
}

beforeAll(async () => {
  cloud = await startTestCloud();
  dir = mkdtempSync(join(tmpdir(), 'tandem-stage-'));
  const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
  for (let i = 0; i < 3; i++) {
    const key = rawObjectKey('shardId-000000000000', T0 + i * HOUR, padSeq(String(100 + 2 * i)), padSeq(String(101 + 2 * i)));
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket, Key: key, Body: Buffer.from(`object ${i}`) }));
  }
}, 60_000);

afterAll(async () => {
  await cloud?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('stageObjects', () => {
  it('seed 47: fetches an object again when its body is cut mid-read, and gives up after three cuts', async () => {
    const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
    const once = cuttingBodies(cloud.clients.s3, 2);
    const staged = await stageObjects(once.client, Bucket, dir, T0 + 3 * HOUR, { concurrency: 1 });
    expect(staged.downloaded).toBe(3);
    expect(once.gets()).toBe(5);
    expect([...staged.files.values()].map((p) => readFileSync(p, 'utf8')).sort()).toEqual(['object 0', 'object 1', 'object 2']);

    const fresh = mkdtempSync(join(tmpdir(), 'tandem-stage-'));
    try {
      await expect(
        stageObjects(cuttingBodies(cloud.clients.s3, 3).client, Bucket, fresh, T0 + 3 * HOUR, { concurrency: 1 }),
      ).rejects.toThrow('aborted');
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('stages only the arrival hours of the range, listed by hour prefix, and leaves the cache of other hours alone', async () => {
    const Bucket = cloud.names.TANDEM_RAW_BUCKET!;
    const ranged = mkdtempSync(join(tmpdir(), 'tandem-stage-'));
    try {
      const all = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR);
      expect(all.objects.map((o) => o.hour)).toEqual([T0, T0 + HOUR, T0 + 2 * HOUR]);
      // from inside hour 1, cutoff inside hour 2: hours 1 and 2, one listing each; nothing downloaded again.
      const part = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 2 * HOUR + 1, { from: T0 + HOUR + 5 });
      expect(part).toMatchObject({ prefixes: 2, downloaded: 0, removed: 0 });
      expect(part.objects.map((o) => o.hour)).toEqual([T0 + HOUR, T0 + 2 * HOUR]);
      expect(part.objects.every((o) => o.size > 0 && o.path.startsWith(ranged))).toBe(true);
      // A cached file of a listed hour whose object is gone is removed; hour 0 (not read) keeps its cache.
      const gone = part.objects[0]!;
      await cloud.clients.s3.send(new DeleteObjectCommand({ Bucket, Key: gone.key }));
      try {
        const again = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR, { from: T0 + HOUR });
        expect(again).toMatchObject({ removed: 1, downloaded: 0 });
        expect(again.objects.map((o) => o.hour)).toEqual([T0 + 2 * HOUR]);
        expect(existsSync(gone.path)).toBe(false);
        expect(existsSync(all.objects[0]!.path)).toBe(true);
      } finally {
        await cloud.clients.s3.send(new PutObjectCommand({ Bucket, Key: gone.key, Body: Buffer.from('object 1') }));
      }
      // With the archive's record at hand, only the hours it records are listed (a rebuild: not the whole raw/ prefix),
      // and of those not the compacted ones (read as Parquet).
      const recorded = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR, { recorded: new Set([T0, T0 + 2 * HOUR]) });
      expect(recorded).toMatchObject({ prefixes: 2, downloaded: 0, removed: 0 });
      expect(recorded.objects.map((o) => o.hour)).toEqual([T0, T0 + 2 * HOUR]);
      const notCompacted = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR, {
        recorded: new Set([T0, T0 + HOUR, T0 + 2 * HOUR]),
        compacted: new Set([T0, T0 + HOUR]),
      });
      expect(notCompacted).toMatchObject({ prefixes: 1, parquet: [] });
      expect(notCompacted.objects.map((o) => o.hour)).toEqual([T0 + 2 * HOUR]);
      const ranged1 = await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR, { from: T0, recorded: new Set([T0 + HOUR]) });
      expect(ranged1.objects.map((o) => o.hour)).toEqual([T0 + HOUR]);
      expect(await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + 3 * HOUR, { recorded: new Set() })).toMatchObject({
        objects: [],
        prefixes: 0,
      });
      // An empty range (from = cutoff on an hour boundary) lists nothing.
      expect(await stageObjects(cloud.clients.s3, Bucket, ranged, T0 + HOUR, { from: T0 + HOUR })).toMatchObject({
        objects: [],
        prefixes: 0,
      });
    } finally {
      rmSync(ranged, { recursive: true, force: true });
    }
  });
});

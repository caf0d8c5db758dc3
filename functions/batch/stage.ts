/**
 * The DuckDB engine's staging cache: raw objects copied from S3 to a local
 * directory, mirrored key for key (`<dir>/raw/dt=.../<shard>/<range>.json.gz`).
 * DuckDB cannot read S3 here (httpfs is not bundled and is not downloaded), so
 * it reads these files. Only objects missing locally (or of another size) are
 * downloaded (by ETag and size); the cache survives between runs. A run reads exactly the objects
 * the listing returns: a cached file whose object is gone from S3 is not read
 * (and is removed), so the cache can never hide a missing object.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { parseRawObjectKey } from '../archive/layout.ts';
import { mapLimit } from '../core/limit.ts';
import { RAW_PREFIX } from '../resources.ts';

export interface ListedObject {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly hour: number;
}

/** Every raw object (ListObjectsV2, all pages). Keys that are not archive objects are ignored. */
export async function listRawObjects(s3: S3Client, rawBucket: string): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: rawBucket, Prefix: RAW_PREFIX, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      const name = o.Key ? parseRawObjectKey(o.Key) : undefined;
      if (name) out.push({ key: name.key, size: o.Size ?? 0, etag: o.ETag ?? '', hour: name.hour });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

export interface StageResult {
  /** Local paths by object key, for the objects staged (hour start < cutoff). */
  readonly files: Map<string, string>;
  readonly downloaded: number;
  readonly downloadedBytes: number;
  readonly removed: number;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** `<dir>/index.json`: the ETag each cached file was downloaded with. */
const INDEX = 'index.json';

async function readIndex(dir: string): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(join(dir, INDEX), 'utf8')) as Record<string, string>;
  } catch {
    return {};
  }
}

async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  // Write aside, then rename: a crash never leaves a partial file under the real name.
  const tmp = `${path}.${randomBytes(4).toString('hex')}.part`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

async function walk(dir: string): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? walk(join(dir, e.name)) : Promise.resolve([join(dir, e.name)]))));
  return nested.flat();
}

/** Attempts at reading one object whole. */
const READ_ATTEMPTS = 3;

/**
 * GetObject and its body read whole. The SDK retries a request that fails, but
 * not the body stream it has handed over: a connection cut mid-body (Node's
 * `aborted`, ECONNRESET) would fail the whole batch run, so the object is
 * fetched again (seen once in the simulation campaign, docs/reliability.md).
 */
async function readObject(s3: S3Client, rawBucket: string, key: string): Promise<{ bytes: Uint8Array; etag: string | undefined }> {
  for (let attempt = 1; ; attempt++) {
    const got = await s3.send(new GetObjectCommand({ Bucket: rawBucket, Key: key }));
    if (!got.Body) throw new Error(`s3://${rawBucket}/${key} has no body`);
    try {
      return { bytes: await got.Body.transformToByteArray(), etag: got.ETag };
    } catch (e) {
      if (attempt >= READ_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}

/**
 * Stages every raw object of an arrival hour starting before `cutoff` into
 * `dir`, downloading only what is not there yet (at most `concurrency` at a
 * time), and removes cached files whose object no longer exists.
 */
export async function stageObjects(s3: S3Client, rawBucket: string, dir: string, cutoff: number, concurrency = 16): Promise<StageResult> {
  const listed = await listRawObjects(s3, rawBucket);
  const wanted = listed.filter((o) => o.hour < cutoff);
  const index = await readIndex(dir);
  const files = new Map<string, string>();
  let downloaded = 0;
  let downloadedBytes = 0;
  try {
    await mapLimit(wanted, concurrency, async (o) => {
      const path = join(dir, ...o.key.split('/'));
      files.set(o.key, path);
      // Same ETag and size: the very object already cached (a rewritten object gets a new ETag).
      if (index[o.key] === o.etag && (await sizeOf(path)) === o.size) return;
      const got = await readObject(s3, rawBucket, o.key);
      const bytes = got.bytes;
      await writeAtomically(path, bytes);
      index[o.key] = got.etag ?? o.etag;
      downloaded++;
      downloadedBytes += bytes.length;
    });
  } finally {
    await writeAtomically(join(dir, INDEX), JSON.stringify(index));
  }
  const present = new Set(listed.map((o) => o.key));
  let removed = 0;
  for (const path of await walk(join(dir, RAW_PREFIX))) {
    const key = relative(dir, path).split(sep).join('/');
    if (!present.has(key)) {
      await rm(path, { force: true });
      delete index[key];
      removed++;
    }
  }
  await writeAtomically(join(dir, INDEX), JSON.stringify(index));
  return { files, downloaded, downloadedBytes, removed };
}

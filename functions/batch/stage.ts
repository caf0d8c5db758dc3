/**
 * The DuckDB engine's staging cache: raw objects copied from S3 to a local
 * directory, mirrored key for key (`<dir>/raw/dt=.../<shard>/<range>.json.gz`).
 * DuckDB cannot read S3 here (httpfs is not bundled and is not downloaded), so
 * it reads these files. A run stages only the arrival hours it reads (from the
 * hour of `from` to the hour of cutoff - 1; all of them for a rebuild), listed
 * by key prefix, so its cost follows that range, not the history. Only objects
 * missing locally (or of another ETag or size) are downloaded; the cache
 * survives between runs. A run reads exactly the objects the listing returns:
 * a cached file of a listed hour whose object is gone from S3 is not read (and
 * is removed), so the cache can never hide a missing object.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { HOUR_MS, parseRawObjectKey } from '../archive/layout.ts';
import { mapLimit } from '../core/limit.ts';
import { arrivalPartition } from '../core/sql.ts';
import { RAW_PREFIX } from '../resources.ts';
import { COMPACT_PREFIX, parseCompactKey } from './compact.ts';
import { readHours } from './engine.ts';

export interface ListedObject {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly hour: number;
}

const DAY_MS = 24 * HOUR_MS;

/**
 * Key prefixes covering exactly the arrival hours `first`..`last` (hour starts,
 * inclusive) that `listed` keeps: a whole day as `raw/dt=YYYY-MM-DD/` when it
 * keeps all of the day's hours, else the kept hours one by one
 * (`raw/dt=YYYY-MM-DD/hr=HH/`). `first` null: all of `raw/` (the caller keeps
 * the hours up to `last`). No Delimiter: s3rver's delimiter listing only finds
 * one level (docs: shared DESIGN "Facts measured").
 */
export function hourPrefixes(first: number | null, last: number, listed: (hour: number) => boolean = () => true): string[] {
  if (first === null) return [RAW_PREFIX];
  const out: string[] = [];
  const wholeDay = (day: number) => {
    for (let h = day; h < day + DAY_MS; h += HOUR_MS) if (!listed(h)) return false;
    return true;
  };
  for (let h = first; h <= last; ) {
    const { dt, hr } = arrivalPartition(h);
    if (h % DAY_MS === 0 && h + DAY_MS - HOUR_MS <= last && wholeDay(h)) {
      out.push(`${RAW_PREFIX}dt=${dt}/`);
      h += DAY_MS;
      continue;
    }
    if (listed(h)) out.push(`${RAW_PREFIX}dt=${dt}/hr=${hr}/`);
    h += HOUR_MS;
  }
  return out;
}

/**
 * Every raw object under `prefix` (ListObjectsV2, all pages). Keys that are not archive objects are ignored.
 * `onPage` is called with each page's objects as it arrives (not awaited: the listing goes on).
 */
export async function listRawObjects(
  s3: S3Client,
  rawBucket: string,
  prefix = RAW_PREFIX,
  onPage?: (objects: ListedObject[]) => void,
): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: rawBucket, Prefix: prefix, ContinuationToken: token }));
    const objects: ListedObject[] = [];
    for (const o of page.Contents ?? []) {
      const name = o.Key ? parseRawObjectKey(o.Key) : undefined;
      if (name) objects.push({ key: name.key, size: o.Size ?? 0, etag: o.ETag ?? '', hour: name.hour });
    }
    out.push(...objects);
    onPage?.(objects);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** Every compacted hour's Parquet object (compact.ts) under `prefix` (the whole compact/ prefix by default), all pages. */
export async function listCompactObjects(s3: S3Client, rawBucket: string, prefix = COMPACT_PREFIX): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: rawBucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) {
      const name = o.Key ? parseCompactKey(o.Key) : undefined;
      if (name) out.push({ key: name.key, size: o.Size ?? 0, etag: o.ETag ?? '', hour: name.hour });
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

export interface StageOptions {
  /** The lowest arrival the run reads; null or absent: every hour before the cutoff. */
  readonly from?: number | null;
  /** Downloads (and listings) in flight. @default 16 */
  readonly concurrency?: number;
  /**
   * Compacted arrival hours (compact.ts): their Parquet object is staged
   * instead of their raw objects. A compacted hour whose object is missing
   * is simply not staged (the completeness check then fails it).
   */
  readonly compacted?: ReadonlySet<number>;
  /**
   * The arrival hours the archive's manifest records objects in (verify.ts readArchiveManifest, read before the
   * listing): only these hours are listed, so a rebuild lists the few hours not compacted yet instead of every object
   * under `raw/`. An hour without a manifest item holds no record the run must read: the cutoff never passes a record
   * the archive has not recorded, and a crashed attempt's leftover object lies in the hour its retry records (arrival
   * times are the stream's). @default every hour of the range (all of `raw/` for a run over all history)
   */
  readonly recorded?: ReadonlySet<number>;
  /**
   * Called with raw objects of the range as soon as they are staged (a listing page's, downloaded where needed),
   * while the listing goes on, so the engine parses them meanwhile: every object of the result's `objects` is passed
   * exactly once, before stageObjects returns, in batches of about STAGED_BATCH objects. A file is never removed
   * from the cache after it was passed (a listed object's file stays).
   */
  readonly onStaged?: (objects: readonly StagedObject[]) => void;
  /** Called once with the result's `parquet` objects (when there are any) as soon as they are staged, likewise. */
  readonly onStagedParquet?: (objects: readonly StagedObject[]) => void;
}

/** A staged object: its listing entry and its local path. */
export type StagedObject = ListedObject & { readonly path: string };

/** Objects per `onStaged` call (the last one may hold fewer): enough files for a parse to use every core. */
const STAGED_BATCH = 500;

export interface StageResult {
  /** The objects staged (arrival hours hour(from)..hour(cutoff - 1)), in key order, with their local paths. */
  readonly objects: readonly (ListedObject & { readonly path: string })[];
  /** The Parquet objects of the compacted hours in range, in key order, with their local paths. */
  readonly parquet: readonly (ListedObject & { readonly path: string })[];
  /** Local paths by object key. */
  readonly files: Map<string, string>;
  /** S3 listing requests' prefixes (one listing each, paged). */
  readonly prefixes: number;
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

/**
 * The ETag each cached file was downloaded with, one small index per arrival
 * hour (`<dir>/index/dt=YYYY-MM-DD/hr=HH.json`): a run reads and writes only
 * the indexes of its hours, never one file the size of the history.
 */
function indexPath(dir: string, hour: number): string {
  const { dt, hr } = arrivalPartition(hour);
  return join(dir, 'index', `dt=${dt}`, `hr=${hr}.json`);
}

/** The single index of earlier versions: no longer read (its files are downloaded again once). */
const LEGACY_INDEX = 'index.json';

async function readIndex(path: string): Promise<Record<string, string>> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, string>;
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
 * Stages every raw object of the arrival hours hour(from)..hour(cutoff - 1)
 * (every hour starting before `cutoff` without `from`) into `dir`, downloading
 * only what is not there yet (at most `concurrency` at a time), and removes
 * the cached files of those hours whose object no longer exists.
 */
export async function stageObjects(
  s3: S3Client,
  rawBucket: string,
  dir: string,
  cutoff: number,
  options: StageOptions = {},
): Promise<StageResult> {
  const concurrency = options.concurrency ?? 16;
  const { first, last } = readHours(cutoff, options.from ?? null);
  const compacted = options.compacted ?? new Set<number>();
  const recorded = options.recorded;
  // A run over all history starts at the first hour the archive recorded, when its record is at hand.
  let start = first;
  if (start === null && recorded) {
    start = Number.POSITIVE_INFINITY;
    for (const h of recorded) if (h < start) start = h;
  }
  // Compacted hours are read as Parquet: their raw objects are not listed.
  const prefixes =
    start === Number.POSITIVE_INFINITY ? [] : hourPrefixes(start, last, (h) => !compacted.has(h) && (!recorded || recorded.has(h)));
  const inRange = (hour: number) => hour <= last && (first === null || hour >= first);
  const staged = (o: ListedObject): StagedObject => ({ ...o, path: join(dir, ...o.key.split('/')) });

  const indexes = new Map<number, Promise<Record<string, string>>>();
  const dirty = new Set<number>();
  const indexOf = (hour: number) => {
    let index = indexes.get(hour);
    if (!index) {
      index = readIndex(indexPath(dir, hour));
      indexes.set(hour, index);
    }
    return index;
  };
  // The compacted hours' indexes are read while their objects are listed (the hours are known before the listing).
  for (const hour of compacted) if (inRange(hour)) void indexOf(hour);
  const saveIndexes = async () => {
    for (const hour of dirty) await writeAtomically(indexPath(dir, hour), JSON.stringify(await indexes.get(hour)));
    dirty.clear();
  };
  let downloaded = 0;
  let downloadedBytes = 0;
  // At most `concurrency` downloads at a time over all the listings' pages: a freed slot goes to the next waiting.
  let active = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    if (active < concurrency) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
  };
  const free = () => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  /** Downloads what is not cached yet. */
  const fetchMissing = (objects: readonly StagedObject[]) =>
    mapLimit(objects, concurrency, async (o) => {
      const index = await indexOf(o.hour);
      // Same ETag and size: the very object already cached (a rewritten object gets a new ETag).
      if (index[o.key] === o.etag && (await sizeOf(o.path)) === o.size) return;
      await slot();
      try {
        const got = await readObject(s3, rawBucket, o.key);
        await writeAtomically(o.path, got.bytes);
        index[o.key] = got.etag ?? o.etag;
        dirty.add(o.hour);
        downloaded++;
        downloadedBytes += got.bytes.length;
      } finally {
        free();
      }
    });

  const listed: ListedObject[] = [];
  const objects: StagedObject[] = [];
  let pending: StagedObject[] = [];
  const hand = (all: boolean) => {
    if (pending.length === 0 || (!all && pending.length < STAGED_BATCH)) return;
    const batch = pending;
    pending = [];
    options.onStaged?.(batch);
  };
  // The compacted hours' Parquet objects, listed first (few: one per hour), then staged beside the raw listings.
  const listParquet = async (): Promise<ListedObject[]> => {
    if (compacted.size === 0) return [];
    // A run over all history lists the whole compact/ prefix (one object per hour); an increment only the days of its
    // compacted hours, so its listings do not grow with history.
    const compactDays =
      first === null
        ? [COMPACT_PREFIX]
        : [...new Set([...compacted].filter(inRange).map((h) => `${COMPACT_PREFIX}dt=${arrivalPartition(h).dt}/`))].sort();
    return (await mapLimit(compactDays, concurrency, (p) => listCompactObjects(s3, rawBucket, p))).flat();
  };
  const parquetListed = listParquet();
  parquetListed.catch(() => undefined);
  const stageParquet = async (): Promise<StagedObject[]> => {
    const listedParquet = await parquetListed;
    const wanted = listedParquet.filter((o) => inRange(o.hour) && compacted.has(o.hour)).map(staged);
    await fetchMissing(wanted);
    if (wanted.length > 0) options.onStagedParquet?.(wanted);
    return wanted;
  };
  // Each listing's pages are staged one after another while the listing goes on, and handed on as they are staged.
  const stageRaw = () =>
    mapLimit(prefixes, concurrency, async (prefix) => {
      let chain: Promise<unknown> = Promise.resolve();
      const stagePage = async (page: readonly ListedObject[]) => {
        const wanted = page.filter((o) => inRange(o.hour) && !compacted.has(o.hour)).map(staged);
        await fetchMissing(wanted);
        objects.push(...wanted);
        pending.push(...wanted);
        hand(false);
      };
      try {
        listed.push(
          ...(await listRawObjects(s3, rawBucket, prefix, (page) => {
            chain = chain.then(() => stagePage(page));
          })),
        );
      } finally {
        await chain;
      }
    });
  let parquet: StagedObject[] = [];
  try {
    // Both ended before anything is saved or thrown: nothing is handed on after stageObjects settled.
    // The raw listings once the Parquet objects are listed: their parse (the whole compacted history) then starts first.
    const rawStaged = parquetListed.catch(() => undefined).then(() => stageRaw());
    const [raw, compact] = await Promise.allSettled([rawStaged.then(() => hand(true)), stageParquet()]);
    if (raw.status === 'rejected') throw raw.reason;
    if (compact.status === 'rejected') throw compact.reason;
    parquet = compact.value;
  } finally {
    await saveIndexes();
  }
  objects.sort((a, b) => (a.key < b.key ? -1 : 1));

  // Only the listed prefixes' directories: the cache of other hours is left as it is (and not read).
  const present = new Set(listed.map((o) => o.key));
  let removed = 0;
  for (const prefix of prefixes) {
    for (const path of await walk(join(dir, ...prefix.split('/').filter(Boolean)))) {
      const key = relative(dir, path).split(sep).join('/');
      if (present.has(key)) continue;
      await rm(path, { force: true });
      const name = parseRawObjectKey(key);
      if (name) {
        const index = await indexOf(name.hour);
        if (key in index) {
          delete index[key];
          dirty.add(name.hour);
        }
      }
      removed++;
    }
  }
  await saveIndexes();
  await rm(join(dir, LEGACY_INDEX), { force: true });
  return {
    objects,
    parquet,
    files: new Map([...objects, ...parquet].map((o) => [o.key, o.path])),
    prefixes: prefixes.length,
    downloaded,
    downloadedBytes,
    removed,
  };
}

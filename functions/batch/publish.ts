/**
 * Publishing a loaded version (invariant 7, docs/design.md), keeping the last K
 * versions readable, and rolling back to one of them.
 *
 * Publish: every view of version N is loaded (its manifest says so) before
 * the pointer flips, and the flip is a conditional put (N > current), so two
 * runs racing to publish leave the higher version current and the other learns
 * it lost. After the flip, versions below N beyond the newest K published ones
 * retire: manifest `retired` first (so nothing rolls back to them), then their
 * rows are deleted. Versions above the current one are never touched (a
 * rollback's newer versions, or a run still loading).
 *
 * Rollback: see `rollbackAllowed`.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { lagAlarmThresholdSeconds, type Settings, speedExpiry, speedTtlSeconds } from '../core/settings.ts';
import { iso } from '../core/time.ts';
import {
  type Control,
  flipPointer,
  getManifest,
  getPointer,
  listManifests,
  type Pointer,
  replacePointer,
  setManifestState,
  type VersionManifest,
} from './control.ts';
import { deletePartitions, partitionRefs } from './load.ts';

export interface PublishDeps {
  readonly control: Control;
  readonly ddb: DynamoDBClient;
  readonly batchViewsTable: string;
  readonly settings: Settings;
  readonly now: () => number;
}

export type PublishResult =
  | { readonly published: true; readonly pointer: Pointer }
  | { readonly published: false; readonly current: Pointer };

/**
 * The rows a version's manifest references that no other non-retired version's manifest
 * references: the ones that may go when it retires (copy-on-write: an untouched partition is
 * shared by every version from its writer on).
 */
async function unreferencedRows(deps: PublishDeps, retiring: readonly VersionManifest[]): Promise<string[]> {
  const leaving = new Set(retiring.map((m) => m.version));
  const kept = new Set<string>();
  for (const m of await listManifests(deps.control)) {
    if (m.state === 'retired' || leaving.has(m.version)) continue;
    for (const [name, v] of Object.entries(m.views ?? {})) for (const ref of partitionRefs(name, m.version, v)) kept.add(ref.pk);
  }
  const out = new Set<string>();
  for (const m of retiring) {
    for (const [name, v] of Object.entries(m.views ?? {})) {
      for (const ref of partitionRefs(name, m.version, v)) if (!kept.has(ref.pk)) out.add(ref.pk);
    }
  }
  return [...out].sort();
}

/**
 * Retires versions: manifest `retired` first (no rollback can reach them any more), then the
 * rows they reference that no kept version references (a failed run's own rows; a partition a
 * kept version still shares stays).
 */
export async function retireVersions(deps: PublishDeps, ms: readonly VersionManifest[]): Promise<number> {
  if (ms.length === 0) return 0;
  for (const m of ms) if (m.state !== 'retired') await setManifestState(deps.control, m.version, 'retired', deps.now());
  return deletePartitions({ ddb: deps.ddb, table: deps.batchViewsTable }, await unreferencedRows(deps, ms));
}

/** Retires one version (see retireVersions). */
export async function retireVersion(deps: PublishDeps, m: VersionManifest): Promise<number> {
  return retireVersions(deps, [m]);
}

/**
 * Keeps `current` and the `keepVersions - 1` versions below it that were
 * current most recently; retires the others. "Most recently current", not
 * "highest": after a rollback the current version may be the oldest one, and
 * queries in flight when the next version is published still read it
 * (rollbackTo stamps its publishedAt; found by the simulation, seed 633).
 */
export async function applyRetention(deps: PublishDeps, current: number): Promise<number[]> {
  const below = (await listManifests(deps.control))
    .filter((m) => m.version < current && m.state !== 'retired')
    .sort((a, b) => (b.publishedAt ?? 0) - (a.publishedAt ?? 0) || b.version - a.version);
  const keep = new Set(
    below
      .filter((m) => m.state === 'published')
      .slice(0, Math.max(0, deps.settings.keepVersions - 1))
      .map((m) => m.version),
  );
  const retiring = below.filter((m) => !keep.has(m.version));
  await retireVersions(deps, retiring);
  return retiring.map((m) => m.version);
}

/** Flips the pointer to a fully loaded version; see the module comment. Retention (`applyRetention`) comes after. */
export async function publishVersion(
  deps: PublishDeps,
  version: number,
  runId: string,
  viewNames: readonly string[],
): Promise<PublishResult> {
  const m = await getManifest(deps.control, version);
  if (!m) throw new Error(`version ${version} has no manifest`);
  if (m.state === 'retired') {
    // A higher version was published meanwhile and its retention retired ours: we lost the race.
    const current = await getPointer(deps.control);
    if (current && current.version > version) return { published: false, current };
    throw new Error(`version ${version} is retired and cannot be published`);
  }
  for (const name of viewNames) {
    if (!m.views?.[name]?.loaded) throw new Error(`version ${version}: view ${name} is not fully loaded; refusing to publish`);
  }
  const pointer: Pointer = {
    version,
    cutoff: m.cutoff,
    publishedAt: deps.now(),
    runId,
    views: Object.fromEntries(viewNames.map((n) => [n, { rows: m.views[n]!.rows }])),
  };
  const flip = await flipPointer(deps.control, pointer);
  if (!flip.published) {
    // The higher version won: ours can never become current, so it goes at once.
    await retireVersion(deps, m);
    return { published: false, current: flip.current };
  }
  await setManifestState(deps.control, version, 'published', deps.now());
  return { published: true, pointer: flip.current };
}

// ---- rollback -----------------------------------------------------------------------------------

/**
 * May the pointer go back to a version with cutoff `cutoff`?
 *
 * A query serves batch(N) plus the speed deltas of arrival windows >= C_N.
 * Speed deltas expire `speedTtlSeconds` (3 x maxBatchLag) after the end of
 * their window. Going back to an older C needs every speed window from C on:
 * if the window at C has expired (or is about to), the events that arrived
 * between C and the oldest surviving window are in neither layer, and are
 * silently dropped from every answer. So a rollback is allowed only while the
 * speed window at C will survive at least one more lag-alarm period
 * (maxBatchLag): then the rolled-back system is in the same state as one whose
 * batch has lagged, and the lag alarm fires before anything it needs expires.
 */
export function rollbackAllowed(cutoff: number, nowMs: number, s: Settings): { allowed: boolean; oldestCutoff: number; reason?: string } {
  const expires = speedExpiry(cutoff, s);
  const needUntil = Math.ceil(nowMs / 1000) + lagAlarmThresholdSeconds(s);
  // The oldest window-aligned cutoff that still passes (for the message).
  const windowMs = s.windowSeconds * 1000;
  const oldest = Math.ceil((nowMs - (speedTtlSeconds(s) - lagAlarmThresholdSeconds(s)) * 1000 - windowMs) / windowMs) * windowMs;
  if (expires >= needUntil) return { allowed: true, oldestCutoff: oldest };
  return {
    allowed: false,
    oldestCutoff: oldest,
    reason:
      `its cutoff ${iso(cutoff)} is older than the speed layer's coverage allows: speed deltas from ${iso(cutoff)} ` +
      `expire at ${iso(expires * 1000)}, less than one lag-alarm period (${lagAlarmThresholdSeconds(s)} s) from now; ` +
      `the oldest cutoff a rollback may go to now is ${iso(oldest)}`,
  };
}

export type RollbackResult =
  | { readonly status: 'ok'; readonly pointer: Pointer }
  | { readonly status: 'unknown'; readonly message: string }
  | { readonly status: 'conflict'; readonly message: string };

/** Points back (or forward) to a kept version, under the rule of `rollbackAllowed`. */
export async function rollbackTo(deps: PublishDeps, version: number): Promise<RollbackResult> {
  const m = await getManifest(deps.control, version);
  if (!m) return { status: 'unknown', message: `there is no batch version ${version}` };
  const current = await getPointer(deps.control);
  if (current?.version === version) return { status: 'ok', pointer: current };
  if (m.state !== 'published') {
    return {
      status: 'conflict',
      message: m.state === 'retired' ? `version ${version} is retired: its rows are deleted` : `version ${version} was never published`,
    };
  }
  const now = deps.now();
  const rule = rollbackAllowed(m.cutoff, now, deps.settings);
  if (!rule.allowed) return { status: 'conflict', message: `cannot roll back to version ${version}: ${rule.reason}` };
  const pointer: Pointer = {
    version,
    cutoff: m.cutoff,
    publishedAt: now,
    runId: m.runId,
    views: Object.fromEntries(Object.entries(m.views ?? {}).map(([n, v]) => [n, { rows: v.rows }])),
    ...(current ? { rolledBackFrom: current.version } : {}),
  };
  // Before the pointer moves: the version becomes the most recently current, so the next
  // publish keeps it for the queries reading it then (applyRetention).
  await setManifestState(deps.control, version, 'published', now);
  if (!(await replacePointer(deps.control, pointer, current?.version))) {
    return { status: 'conflict', message: 'the published version changed during the rollback; try again' };
  }
  return { status: 'ok', pointer };
}

/**
 * Test fixture: real emulators with Tandem's resources provisioned, and the
 * environment handlers need to reach them. Each test file starts its own set
 * (free ports), so files run in parallel without sharing state.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clients, createClients } from '../../functions/adapters/clients.ts';
import { localNames } from '../../functions/resources.ts';
import { type EmulatorSet, startEmulators } from '../../local/emulators.ts';
import { provision } from '../../local/provision.ts';

export interface TestCloud {
  readonly emulators: EmulatorSet;
  /** Endpoint, credential and resource-name variables: pass to handlers / child processes. */
  readonly env: Record<string, string>;
  readonly names: Record<string, string>;
  readonly clients: Clients;
  readonly dataDir?: string;
  stop(): Promise<void>;
}

export interface TestCloudOptions {
  readonly shards?: number;
  /** Persist emulator data here (a fresh temp dir when `true`). */
  readonly persist?: boolean | string;
  /** Resource name prefix. */
  readonly prefix?: string;
  /** Also copy the env into process.env (for handlers that read it at import). */
  readonly setProcessEnv?: boolean;
}

export async function startTestCloud(opts: TestCloudOptions = {}): Promise<TestCloud> {
  const dataDir = opts.persist === true ? mkdtempSync(join(tmpdir(), 'tandem-test-')) : opts.persist || undefined;
  const emulators = await startEmulators(dataDir ? { dataDir } : {});
  const names = localNames(opts.prefix ?? 'tandem');
  const env = { ...emulators.env, ...names };
  if (opts.setProcessEnv) Object.assign(process.env, env);
  const clients = createClients(env);
  try {
    await provision(clients, { names, shards: opts.shards ?? 2 });
  } catch (e) {
    await emulators.stop();
    throw e;
  }
  return {
    emulators,
    env,
    names,
    clients,
    ...(dataDir ? { dataDir } : {}),
    stop: async () => {
      // Close kept-alive connections first: emulators shut down gracefully only without open ones.
      for (const c of Object.values(clients)) c.destroy();
      await emulators.stop();
    },
  };
}

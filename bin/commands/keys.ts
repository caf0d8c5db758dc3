/**
 * `tandem keys create|revoke|list`: API keys as the AWS authorizer checks them
 * (control-table items `apikey / <sha256>`, functions/api/keys.ts). An admin
 * command: it talks to DynamoDB directly with your AWS credentials (or to the
 * local cloud's dynalite through AWS_ENDPOINT_URL_DYNAMODB / --endpoint), not to
 * the HTTP API, since no API route may mint keys.
 */
import type { Command } from 'commander';
import { localNames, TABLES } from '../../functions/resources.ts';
import { readLocalEndpoints } from '../client.ts';
import { action, narrate, printJson, renderTable, UsageError, usageExits } from '../output.ts';

interface KeysFlags {
  readonly table?: string;
  readonly endpoint?: string;
  readonly dataDir?: string;
  readonly json?: boolean;
}

/**
 * The control table and a DynamoDB client for it: flags, then the environment, then a
 * local cloud running on the data directory (its endpoints.json), with the local names.
 */
async function target(flags: KeysFlags) {
  const env: Record<string, string | undefined> = { ...process.env };
  if (flags.endpoint) env.AWS_ENDPOINT_URL_DYNAMODB = flags.endpoint;
  if (!env.AWS_ENDPOINT_URL_DYNAMODB && !env.AWS_ENDPOINT_URL && !flags.table && !env[TABLES.control.env]) {
    const running = readLocalEndpoints(flags.dataDir);
    if (running) env.AWS_ENDPOINT_URL_DYNAMODB = running.dynamodb;
  }
  const local = Boolean(env.AWS_ENDPOINT_URL_DYNAMODB ?? env.AWS_ENDPOINT_URL);
  if (local) {
    // Emulators check no signature, but the SDK wants some credentials to sign with.
    env.AWS_ACCESS_KEY_ID ??= 'local';
    env.AWS_SECRET_ACCESS_KEY ??= 'local';
  }
  const table = flags.table ?? env[TABLES.control.env] ?? (local ? localNames()[TABLES.control.env] : undefined);
  if (!table) {
    throw new UsageError(
      `which control table? pass --table <name> or set ${TABLES.control.env} (the stack's output); ` +
        `for the local cloud, start it (tandem local) or pass --data-dir <its data dir> or --endpoint <its DynamoDB>`,
    );
  }
  // Loaded here, not at the top: the AWS SDK would slow every other command's start.
  const { createClients } = await import('../../functions/adapters/clients.ts');
  const keys = await import('../../functions/api/keys.ts');
  // Only the env copy carries the dummy credentials; in AWS the default provider chain applies.
  const doc = createClients(local ? env : process.env).doc;
  return { doc, table, keys };
}

const keyAction = <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
  action(async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      // A malformed name is a usage error; an unknown or duplicate key a failure.
      if ((e as Error)?.name === 'KeyError' && /^key name must/.test((e as Error).message)) throw new UsageError((e as Error).message);
      throw e;
    }
  });

export function registerKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description('create, revoke and list API keys in the control table (admin: uses AWS credentials, not the HTTP API)')
    .addHelpText(
      'after',
      `
In AWS: run with credentials that may write the control table, and --table (or ${TABLES.control.env}) set to its name.
On the local cloud: nothing to pass while \`tandem local\` runs on ./.tandem (else --data-dir <dir>); or --endpoint <dynalite URL>. ` +
        `The table defaults to ${localNames()[TABLES.control.env]}.`,
    );
  usageExits(keys);
  const common = (cmd: Command) =>
    usageExits(
      cmd
        .option('--table <name>', `the control table (env ${TABLES.control.env})`)
        .option('--endpoint <url>', 'DynamoDB endpoint (env AWS_ENDPOINT_URL_DYNAMODB), for the local cloud')
        .option('--data-dir <dir>', 'the data directory of a running local cloud (env TANDEM_DATA_DIR; default .tandem)')
        .option('--json', 'print one JSON document'),
    );

  const create = common(
    keys.command('create').description('create a key; prints it once (only its hash is stored)').argument('<name>', 'a name for the key'),
  );
  create.addHelpText('after', '\nExample:\n  tandem keys create dashboard --table MyStack-Control1234');
  create.action(
    keyAction(async (name: string, flags: KeysFlags) => {
      const { doc, table, keys } = await target(flags);
      const { key, record } = await keys.createKey(doc, table, name);
      if (flags.json) printJson({ key, ...record });
      else {
        process.stdout.write(`${key}\n`);
        narrate(`created key "${record.name}" (sha256 ${record.hash.slice(0, 12)}…): store it now, it is not shown again`);
      }
    }),
  );

  const revoke = common(
    keys
      .command('revoke')
      .description('revoke the active key(s) with this name (or hash)')
      .argument('<name>', 'key name or its sha256 hash'),
  );
  revoke.addHelpText('after', '\nExample:\n  tandem keys revoke dashboard --table MyStack-Control1234');
  revoke.action(
    keyAction(async (name: string, flags: KeysFlags) => {
      const { doc, table, keys } = await target(flags);
      const revoked = await keys.revokeKey(doc, table, name);
      if (flags.json) printJson({ revoked });
      else process.stdout.write(`revoked ${revoked.length} key(s) named "${name}"\n`);
    }),
  );

  const list = common(keys.command('list').description('list keys (names, hashes, state; never the keys)'));
  list.addHelpText('after', '\nExample:\n  tandem keys list --json');
  list.action(
    keyAction(async (flags: KeysFlags) => {
      const { doc, table, keys } = await target(flags);
      const all = await keys.listKeys(doc, table);
      if (flags.json) printJson({ keys: all });
      else
        process.stdout.write(
          `${renderTable(
            ['name', 'sha256', 'created', 'state'],
            all.map((k) => [k.name, `${k.hash.slice(0, 12)}…`, k.createdAt, k.revoked ? `revoked ${k.revokedAt ?? ''}` : 'active']),
          )}\n`,
        );
    }),
  );
}

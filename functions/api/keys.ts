/**
 * API keys: only their SHA-256 hashes are stored, as control-table items
 * `apikey / <hash>` `{ name, createdAt, revoked?, revokedAt? }`, so keys can be
 * created and revoked without a deploy and a leaked table reveals no key. The
 * AWS authorizer (functions/authorizer.ts) looks keys up here; the CLI's
 * `tandem keys create|revoke|list` calls these functions. Keys are never logged.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { emptyStats, queryAll } from './read-view.ts';

export const KEY_PK = 'apikey';
/** Key names: what `tandem keys revoke <name>` takes and the authorizer reports as principal. */
export const KEY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
/** Prefix of generated keys, so a key pasted somewhere it should not be is recognizable. */
export const KEY_PREFIX = 'tdm_';

type Doc = Pick<DynamoDBDocumentClient, 'send'>;

export interface KeyRecord {
  readonly name: string;
  readonly hash: string;
  readonly createdAt: string;
  readonly revoked: boolean;
  readonly revokedAt?: string;
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random key: 32 bytes (256 bits) from the system CSPRNG, base64url. */
export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/** Constant-time equality of two hex hashes (no early exit that would leak a prefix match). */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyError';
  }
}

function toRecord(item: Record<string, unknown>): KeyRecord {
  return {
    name: String(item.name),
    hash: String(item.sk),
    createdAt: String(item.createdAt),
    revoked: item.revoked === true,
    ...(item.revokedAt !== undefined && { revokedAt: String(item.revokedAt) }),
  };
}

export async function listKeys(doc: Doc, controlTable: string): Promise<KeyRecord[]> {
  const items = await queryAll(
    doc,
    { TableName: controlTable, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': KEY_PK }, ConsistentRead: true },
    emptyStats(),
  );
  return items.map(toRecord).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
}

/**
 * Creates a key named `name` (unique among keys not revoked) and returns it:
 * the only time the key itself is seen; the table keeps its hash.
 */
export async function createKey(
  doc: Doc,
  controlTable: string,
  name: string,
  now = Date.now(),
): Promise<{ key: string; record: KeyRecord }> {
  if (!KEY_NAME_RE.test(name)) {
    throw new KeyError(
      `key name must be 1-64 letters, digits, _ . @ or - (starting with a letter or digit), received ${JSON.stringify(name)}`,
    );
  }
  if ((await listKeys(doc, controlTable)).some((k) => k.name === name && !k.revoked)) {
    throw new KeyError(`a key named "${name}" exists already (revoke it first, or choose another name)`);
  }
  const key = generateKey();
  const record: KeyRecord = { name, hash: hashKey(key), createdAt: new Date(now).toISOString(), revoked: false };
  await doc.send(
    new PutCommand({
      TableName: controlTable,
      Item: { pk: KEY_PK, sk: record.hash, name, createdAt: record.createdAt, revoked: false },
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
  return { key, record };
}

/** Revokes every key named `nameOrHash` (or the one with that hash); returns the keys revoked. */
export async function revokeKey(doc: Doc, controlTable: string, nameOrHash: string, now = Date.now()): Promise<KeyRecord[]> {
  const targets = (await listKeys(doc, controlTable)).filter((k) => !k.revoked && (k.name === nameOrHash || k.hash === nameOrHash));
  if (targets.length === 0) throw new KeyError(`no active key named "${nameOrHash}"`);
  const revokedAt = new Date(now).toISOString();
  for (const k of targets) {
    await doc.send(
      new UpdateCommand({
        TableName: controlTable,
        Key: { pk: KEY_PK, sk: k.hash },
        UpdateExpression: 'SET revoked = :t, revokedAt = :at',
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: { ':t': true, ':at': revokedAt },
      }),
    );
  }
  return targets.map((k) => ({ ...k, revoked: true, revokedAt }));
}

/** The name of the active key `key`, or undefined (unknown or revoked). */
export async function lookupKey(doc: Doc, controlTable: string, key: string): Promise<string | undefined> {
  const out = await doc.send(new GetCommand({ TableName: controlTable, Key: { pk: KEY_PK, sk: hashKey(key) }, ConsistentRead: true }));
  const item = out.Item;
  if (!item || item.revoked === true) return undefined;
  return String(item.name);
}

/**
 * Keys from the environment (`TANDEM_API_KEY_HASHES`): a comma list of
 * `<name>:<sha256 hex>` or bare hashes (named `env-<n>`). For a deployment
 * without the table lookup; the table is preferred (no deploy to rotate).
 */
export function parseKeyHashes(text: string | undefined): { name: string; hash: string }[] {
  if (!text) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const at = entry.lastIndexOf(':');
      const [name, hash] = at < 0 ? [`env-${i + 1}`, entry] : [entry.slice(0, at), entry.slice(at + 1)];
      if (!/^[0-9a-f]{64}$/i.test(hash)) throw new KeyError(`TANDEM_API_KEY_HASHES entry ${i + 1} is not a SHA-256 hex hash`);
      return { name, hash: hash.toLowerCase() };
    });
}

/** The name of the key among env hashes, compared in constant time against every entry. */
export function matchEnvKey(hashes: readonly { name: string; hash: string }[], key: string): string | undefined {
  const h = hashKey(key);
  let found: string | undefined;
  for (const e of hashes) if (sameHash(e.hash, h)) found ??= e.name;
  return found;
}

/**
 * What IAM authorizes for one AWS SDK command: the action(s), the resource ARN
 * in the local account and region, and the condition keys the request
 * carries, as the service's authorization reference lists them
 * (docs/local-cloud.md, "IAM"). Most actions are the service prefix and the
 * command name without "Command"; the exceptions are spelled out here. KMS is
 * never called locally (the emulators do not encrypt), so no kms: action is
 * ever checked.
 */
import { TABLES } from '../../functions/resources.ts';

export interface AuthorizationCheck {
  readonly action: string;
  readonly resource: string;
  readonly context: Readonly<Record<string, string | string[]>>;
}

export interface ArnTarget {
  readonly account: string;
  readonly region: string;
}

/** IAM service prefix of each SDK client (middleware context.clientName). */
export const SERVICE_PREFIX: Readonly<Record<string, string>> = {
  DynamoDBClient: 'dynamodb',
  DynamoDBDocumentClient: 'dynamodb',
  KinesisClient: 'kinesis',
  S3Client: 's3',
  AthenaClient: 'athena',
  SFNClient: 'states',
};

/** A command the local IAM check cannot map: a gap in this file, not a denial. */
export class UnmappedCommandError extends Error {
  constructor(client: string, command: string, why: string) {
    super(`the local IAM check cannot map ${client} ${command}: ${why} (local/iam/actions.ts)`);
    this.name = 'UnmappedCommandError';
  }
}

type Input = Record<string, unknown>;
type AttrValue = unknown;

/** A key attribute's value as text, whether marshalled ({ S: 'x' }) or not (document client input). */
function scalar(v: AttrValue): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    for (const t of ['S', 'N', 'B']) if (typeof o[t] === 'string') return o[t] as string;
    return undefined;
  }
  return String(v);
}

/** Partition key attribute of a local table (by its name's suffix), for dynamodb:LeadingKeys. */
function partitionKeyOf(tableName: string): string | undefined {
  return Object.values(TABLES).find((t) => tableName.endsWith(`-${t.id}`))?.partitionKey.name;
}

function leadingKeys(tableName: string, items: readonly (Input | undefined)[]): Record<string, string[]> {
  const pk = partitionKeyOf(tableName);
  if (!pk) return {};
  const values = items.map((i) => scalar(i?.[pk])).filter((v): v is string => v !== undefined);
  return values.length > 0 ? { 'dynamodb:LeadingKeys': [...new Set(values)] } : {};
}

/** `pk = :v` (or `#n = :v`) in a key condition: the partition key value a Query reads. */
function queryLeadingKey(input: Input): Input | undefined {
  const pk = partitionKeyOf(String(input.TableName));
  const expr = input.KeyConditionExpression;
  if (!pk || typeof expr !== 'string') return undefined;
  const names = (input.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (input.ExpressionAttributeValues ?? {}) as Record<string, AttrValue>;
  for (const m of expr.matchAll(/([#\w]+)\s*=\s*(:\w+)/g)) {
    const name = m[1]!.startsWith('#') ? names[m[1]!] : m[1];
    if (name === pk) return { [pk]: values[m[2]!] };
  }
  return undefined;
}

function dynamodb(command: string, input: Input, t: ArnTarget): AuthorizationCheck[] {
  const table = (name: string, index?: unknown) =>
    `arn:aws:dynamodb:${t.region}:${t.account}:table/${name}${typeof index === 'string' ? `/index/${index}` : ''}`;
  switch (command) {
    case 'BatchGetItem':
    case 'BatchWriteItem':
      return Object.entries((input.RequestItems ?? {}) as Record<string, unknown>).map(([name, req]) => {
        const keys =
          command === 'BatchGetItem'
            ? ((req as { Keys?: Input[] }).Keys ?? [])
            : ((req ?? []) as { PutRequest?: { Item: Input }; DeleteRequest?: { Key: Input } }[]).map(
                (w) => w.PutRequest?.Item ?? w.DeleteRequest?.Key,
              );
        return { action: `dynamodb:${command}`, resource: table(name), context: leadingKeys(name, keys) };
      });
    case 'TransactWriteItems':
    case 'TransactGetItems': {
      const parts: Record<string, string> = {
        Put: 'PutItem',
        Update: 'UpdateItem',
        Delete: 'DeleteItem',
        ConditionCheck: 'ConditionCheckItem',
        Get: 'GetItem',
      };
      return ((input.TransactItems ?? []) as Record<string, Input>[]).flatMap((item) =>
        Object.entries(item).map(([kind, op]) => {
          const name = String(op.TableName);
          return { action: `dynamodb:${parts[kind]}`, resource: table(name), context: leadingKeys(name, [(op.Item ?? op.Key) as Input]) };
        }),
      );
    }
    default: {
      if (typeof input.TableName !== 'string') throw new UnmappedCommandError('DynamoDB', command, 'no TableName');
      const name = input.TableName;
      const key = command === 'Query' ? queryLeadingKey(input) : ((input.Key ?? input.Item) as Input | undefined);
      return [{ action: `dynamodb:${command}`, resource: table(name, input.IndexName), context: leadingKeys(name, [key]) }];
    }
  }
}

function kinesis(command: string, input: Input, t: ArnTarget, streamOfIterator: (it: string) => string | undefined): AuthorizationCheck[] {
  let arn = typeof input.StreamARN === 'string' ? input.StreamARN : undefined;
  if (!arn && typeof input.StreamName === 'string') arn = `arn:aws:kinesis:${t.region}:${t.account}:stream/${input.StreamName}`;
  // GetRecords names only an iterator: IAM checks the stream the iterator was issued for.
  if (!arn && typeof input.ShardIterator === 'string') arn = streamOfIterator(input.ShardIterator);
  if (!arn) throw new UnmappedCommandError('Kinesis', command, 'no StreamName, StreamARN or known ShardIterator');
  return [{ action: `kinesis:${command}`, resource: arn, context: {} }];
}

/** S3 operations whose IAM action is not `s3:<operation>`. */
const S3_ACTIONS: Readonly<Record<string, string>> = {
  ListObjectsV2: 'ListBucket',
  ListObjects: 'ListBucket',
  HeadBucket: 'ListBucket',
  HeadObject: 'GetObject',
  CreateMultipartUpload: 'PutObject',
  UploadPart: 'PutObject',
  CompleteMultipartUpload: 'PutObject',
  ListParts: 'ListMultipartUploadParts',
  ListMultipartUploads: 'ListBucketMultipartUploads',
};
const S3_BUCKET_LEVEL = new Set(['ListBucket', 'ListBucketMultipartUploads', 'GetBucketLocation']);

function s3(command: string, input: Input): AuthorizationCheck[] {
  const bucket = input.Bucket;
  if (typeof bucket !== 'string') throw new UnmappedCommandError('S3', command, 'no Bucket');
  if (command === 'DeleteObjects') {
    const objects = ((input.Delete as { Objects?: { Key: string }[] } | undefined)?.Objects ?? []).map((o) => o.Key);
    return objects.map((k) => ({ action: 's3:DeleteObject', resource: `arn:aws:s3:::${bucket}/${k}`, context: {} }));
  }
  const action = S3_ACTIONS[command] ?? command;
  if (S3_BUCKET_LEVEL.has(action)) {
    const prefix: Record<string, string> = typeof input.Prefix === 'string' ? { 's3:prefix': input.Prefix } : {};
    return [{ action: `s3:${action}`, resource: `arn:aws:s3:::${bucket}`, context: action === 'ListBucket' ? prefix : {} }];
  }
  if (typeof input.Key !== 'string') throw new UnmappedCommandError('S3', command, 'no Key');
  return [{ action: `s3:${action}`, resource: `arn:aws:s3:::${bucket}/${input.Key}`, context: {} }];
}

function states(command: string, input: Input): AuthorizationCheck[] {
  const arn = input.stateMachineArn ?? input.executionArn;
  if (typeof arn !== 'string') throw new UnmappedCommandError('SFN', command, 'no stateMachineArn or executionArn');
  return [{ action: `states:${command}`, resource: arn, context: {} }];
}

function athena(command: string, input: Input, t: ArnTarget, workgroupOfQuery: (id: string) => string | undefined): AuthorizationCheck[] {
  const wg =
    typeof input.WorkGroup === 'string'
      ? input.WorkGroup
      : typeof input.QueryExecutionId === 'string'
        ? workgroupOfQuery(input.QueryExecutionId)
        : undefined;
  if (!wg) throw new UnmappedCommandError('Athena', command, 'no WorkGroup or known QueryExecutionId');
  return [{ action: `athena:${command}`, resource: `arn:aws:athena:${t.region}:${t.account}:workgroup/${wg}`, context: {} }];
}

export interface Remembered {
  /** Stream ARN of a Kinesis shard iterator seen in a response. */
  streamOfIterator(iterator: string): string | undefined;
  /** Workgroup of an Athena query execution started here. */
  workgroupOfQuery(id: string): string | undefined;
}

/** The checks for one SDK command (`GetItemCommand` on `DynamoDBClient`, with its input). */
export function authorizationChecks(
  clientName: string,
  commandName: string,
  input: Input,
  t: ArnTarget,
  seen: Remembered,
): AuthorizationCheck[] {
  const prefix = SERVICE_PREFIX[clientName];
  if (!prefix) throw new UnmappedCommandError(clientName, commandName, 'unknown client');
  const command = commandName.replace(/Command$/, '');
  switch (prefix) {
    case 'dynamodb':
      return dynamodb(command, input, t);
    case 'kinesis':
      return kinesis(command, input, t, (it) => seen.streamOfIterator(it));
    case 's3':
      return s3(command, input);
    case 'states':
      return states(command, input);
    default:
      return athena(command, input, t, (id) => seen.workgroupOfQuery(id));
  }
}

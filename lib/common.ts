/**
 * Secure-by-default building blocks every layer construct shares: tables and
 * buckets built from the one description in `functions/resources.ts`, the
 * on-failure destination of the event source mappings, least-privilege grants
 * with explicit action lists, and scoped cdk-nag acknowledgments.
 */
import { type Duration, type RemovalPolicy, Stack, Token, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference.js';
import { Construct, type IConstruct } from 'constructs';
import type { TableSpec } from '../functions/resources.ts';

/** Throws a validation error that carries the construct path and the value received. */
export function invalid(scope: IConstruct, message: string): never {
  throw new Error(`${scope.node.path}: ${message}`);
}

/** Validates a whole number in [min, max] unless it is an unresolved token. */
export function checkRange(scope: IConstruct, name: string, value: number | undefined, min: number, max: number): void {
  if (value === undefined || Token.isUnresolved(value)) return;
  if (!Number.isInteger(value) || value < min || value > max)
    invalid(scope, `${name} must be a whole number between ${min} and ${max}. Received ${value}`);
}

/** Validates a duration in [min, max] seconds unless it is an unresolved token. */
export function checkDuration(scope: IConstruct, name: string, value: Duration | undefined, minSeconds: number, maxSeconds: number): void {
  if (value === undefined || value.isUnresolved()) return;
  const s = value.toSeconds();
  if (s < minSeconds || s > maxSeconds)
    invalid(scope, `${name} must be between ${minSeconds} and ${maxSeconds} seconds. Received ${s} seconds`);
}

/** The text cdk-nag uses for any resource string (ARN with tokens) in IAM findings. */
export function nagResource(scope: IConstruct, resource: string): string {
  return flattenCfnReference(Stack.of(scope).resolve(resource));
}

/** The construct to acknowledge a grantee's findings on (its role), if it is one. */
export function principalConstruct(grantee: iam.IGrantable): IConstruct | undefined {
  const p = grantee.grantPrincipal;
  return Construct.isConstruct(p) ? p : undefined;
}

/** Acknowledges cdk-nag findings on one construct (and its children), each with its reason. */
export function acknowledge(scope: IConstruct, findings: Readonly<Record<string, string>>): void {
  for (const [id, reason] of Object.entries(findings)) Validations.of(scope).acknowledge({ id: `AwsSolutions-${id}`, reason });
}

/** Reason shared by every function that traces with X-Ray. */
export const XRAY_REASON =
  'X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (AWS docs); the actions are explicit';

export interface TandemTableProps {
  /** What happens to the table when it leaves the stack. */
  readonly removalPolicy: RemovalPolicy;
}

/**
 * A DynamoDB table from its `resources.ts` spec: on-demand, encrypted with the
 * AWS-managed key, point-in-time recovery, TTL on the spec's attribute.
 */
export function tandemTable(scope: Construct, id: string, spec: TableSpec, props: TandemTableProps): dynamodb.Table {
  const key = (k: { name: string; type: 'S' | 'N' }) => ({
    name: k.name,
    type: k.type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER,
  });
  return new dynamodb.Table(scope, id, {
    partitionKey: key(spec.partitionKey),
    ...(spec.sortKey ? { sortKey: key(spec.sortKey) } : {}),
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    ...(spec.ttlAttribute ? { timeToLiveAttribute: spec.ttlAttribute } : {}),
    removalPolicy: props.removalPolicy,
  });
}

export interface SecureBucketProps {
  readonly removalPolicy: RemovalPolicy;
  /** Bucket receiving this bucket's server access logs; undefined only for the access-log bucket itself. */
  readonly accessLogsBucket: s3.IBucket | undefined;
  /**
   * Prefix of this bucket's access logs in the log bucket.
   *
   * @default - the construct id, lowercased, and `/`
   */
  readonly accessLogsPrefix?: string;
  /**
   * Lifecycle rules.
   *
   * @default - none
   */
  readonly lifecycleRules?: s3.LifecycleRule[];
  /**
   * CloudWatch request-metrics filters (e.g. for the on-failure alarm).
   *
   * @default - none
   */
  readonly metrics?: s3.BucketMetrics[];
}

/** An S3 bucket with SSE-S3, TLS-only policy, all public access blocked, owner-enforced objects and access logs. */
export function secureBucket(scope: Construct, id: string, props: SecureBucketProps): s3.Bucket {
  const bucket = new s3.Bucket(scope, id, {
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    minimumTLSVersion: 1.2,
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    // ACLs off everywhere: the log bucket receives S3 logs through a bucket policy (CDK adds it).
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    ...(props.accessLogsBucket
      ? { serverAccessLogsBucket: props.accessLogsBucket, serverAccessLogsPrefix: props.accessLogsPrefix ?? `${id.toLowerCase()}/` }
      : {}),
    ...(props.lifecycleRules ? { lifecycleRules: props.lifecycleRules } : {}),
    ...(props.metrics ? { metrics: props.metrics } : {}),
    removalPolicy: props.removalPolicy,
  });
  if (!props.accessLogsBucket) {
    acknowledge(bucket, { S1: 'This is the server-access-log bucket of the stack; logging it into itself would loop' });
  }
  return bucket;
}

/** Bucket-level and object-level ARNs for a key prefix (no trailing `*` on the bucket). */
function objects(bucket: s3.IBucket, prefix: string): string {
  return bucket.arnForObjects(`${prefix}*`);
}

/** Grants reading objects under a prefix and listing that prefix only. */
export function grantReadPrefix(bucket: s3.IBucket, grantee: iam.IGrantable, prefix: string): iam.Grant {
  iam.Grant.addToPrincipal({
    grantee,
    actions: ['s3:ListBucket'],
    resourceArns: [bucket.bucketArn],
    conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
  });
  return iam.Grant.addToPrincipal({ grantee, actions: ['s3:GetObject'], resourceArns: [objects(bucket, prefix)] });
}

/** Grants writing (and overwriting: deterministic keys) objects under a prefix; no read, no delete. */
export function grantWritePrefix(bucket: s3.IBucket, grantee: iam.IGrantable, prefix: string): iam.Grant {
  return iam.Grant.addToPrincipal({
    grantee,
    actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
    resourceArns: [objects(bucket, prefix)],
  });
}

/**
 * The on-failure destination of a Kinesis event source mapping: an S3 bucket.
 * Hand-written because aws-cdk-lib's `S3OnFailureDestination` grants
 * `bucket.grantReadWrite` (s3:GetObject*, s3:List*, s3:DeleteObject*, ...),
 * and the functions here get explicit actions only. Lambda needs exactly
 * s3:PutObject and s3:ListBucket on the destination (Lambda developer guide,
 * "Retaining records of asynchronous invocations / S3 destinations").
 */
export class FailureBucketDestination implements lambda.IEventSourceDlq {
  constructor(readonly bucket: s3.IBucket) {}

  bind(_target: lambda.IEventSourceMapping, targetHandler: lambda.IFunction): lambda.DlqDestinationConfig {
    iam.Grant.addToPrincipal({ grantee: targetHandler, actions: ['s3:ListBucket'], resourceArns: [this.bucket.bucketArn] });
    iam.Grant.addToPrincipal({ grantee: targetHandler, actions: ['s3:PutObject'], resourceArns: [this.bucket.arnForObjects('*')] });
    return { destination: this.bucket.bucketArn };
  }
}

/**
 * Grants DynamoDB item reads, no Scan and no writes. Hand-written (like the
 * other grants here) because aws-cdk-lib's grantReadData also allows Scan and
 * the table's stream.
 */
export function grantTableRead(table: dynamodb.ITable | readonly dynamodb.ITable[], grantee: iam.IGrantable): iam.Grant {
  const tables = Array.isArray(table) ? table : [table as dynamodb.ITable];
  return iam.Grant.addToPrincipal({
    grantee,
    actions: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:DescribeTable'],
    resourceArns: tables.map((t) => t.tableArn),
  });
}

/** Grants DynamoDB item reads and writes (conditional updates included), never table administration. */
export function grantTableReadWrite(table: dynamodb.ITable, grantee: iam.IGrantable, opts: { scan?: boolean } = {}): iam.Grant {
  return iam.Grant.addToPrincipal({
    grantee,
    actions: [
      'dynamodb:GetItem',
      'dynamodb:BatchGetItem',
      'dynamodb:Query',
      ...(opts.scan ? ['dynamodb:Scan'] : []),
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:DeleteItem',
      'dynamodb:BatchWriteItem',
      'dynamodb:ConditionCheckItem',
      'dynamodb:DescribeTable',
    ],
    resourceArns: [table.tableArn],
  });
}

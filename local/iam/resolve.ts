/**
 * From the synthesized template to what each local function runs with: its
 * environment and its IAM policy, with the template's intrinsics (Ref,
 * Fn::GetAtt, Fn::Join: the ones the template uses) resolved to the local
 * cloud's names and to ARNs in the local account and region. Which logical id
 * is which local resource is read from the functions' own environment: a
 * variable of functions/resources.ts (TANDEM_SPEED_TABLE, ...) set to
 * `{ Ref: <id> }` names the resource that localNames() gives that variable.
 */

import type { HandlerName } from '../../functions/contract/routes.ts';
import { SERVICE_NAMES } from '../../functions/contract/telemetry.ts';
import { BUCKETS, STREAM, TABLES } from '../../functions/resources.ts';
import type { CfnTemplate } from './template.ts';

export interface PolicyStatement {
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: string | string[];
  readonly Resource: string | string[];
  readonly Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  readonly Version: string;
  readonly Statement: PolicyStatement[];
}

export interface LocalTarget {
  readonly account: string;
  readonly region: string;
  /** Local physical names by resources.ts variable (localNames()). */
  readonly names: Readonly<Record<string, string>>;
}

/** A function of the template, resolved for the local cloud. */
export interface TemplateFunction {
  readonly handler: HandlerName;
  readonly logicalId: string;
  readonly roleLogicalId: string;
  /** The environment the template gives it, resolved. */
  readonly environment: Readonly<Record<string, string>>;
  /** Its role's policies (inline and AWS::IAM::Policy), resolved. */
  readonly policies: readonly { readonly name: string; readonly document: PolicyDocument }[];
}

type Json = unknown;

/** Resolves the intrinsics of one template for a local target; throws on one it does not know (never guesses). */
export class TemplateResolver {
  private readonly physical = new Map<string, string>();

  constructor(
    private readonly template: CfnTemplate,
    private readonly target: LocalTarget,
  ) {
    const byEnv = new Set<string>([STREAM.env, ...Object.values(TABLES).map((t) => t.env), ...Object.values(BUCKETS).map((b) => b.env)]);
    for (const r of Object.values(template.Resources)) {
      if (r.Type !== 'AWS::Lambda::Function') continue;
      const vars = ((r.Properties?.Environment as { Variables?: Record<string, Json> } | undefined)?.Variables ?? {}) as Record<
        string,
        Json
      >;
      for (const [k, v] of Object.entries(vars)) {
        const ref = (v as { Ref?: unknown } | null)?.Ref;
        if (typeof ref !== 'string' || !byEnv.has(k)) continue;
        const name = target.names[k];
        if (!name) throw new Error(`no local name for ${k} (localNames())`);
        const known = this.physical.get(ref);
        if (known !== undefined && known !== name) throw new Error(`resource ${ref} is both ${known} and ${name} locally`);
        this.physical.set(ref, name);
      }
    }
  }

  /** The local physical name of a resource (Ref of a table, bucket or stream; else a readable stand-in). */
  name(logicalId: string): string {
    const known = this.physical.get(logicalId);
    if (known) return known;
    const r = this.resource(logicalId);
    // Not emulated locally (Athena workgroup's results bucket, Glue database, log groups, the state machine):
    // a stable name that no local call can hit by accident.
    if (r.Type === 'AWS::Glue::Database') return String((r.Properties?.DatabaseInput as { Name?: string } | undefined)?.Name ?? logicalId);
    return `local-${logicalId}`.toLowerCase();
  }

  private resource(logicalId: string) {
    const r = this.template.Resources[logicalId];
    if (!r) throw new Error(`the template has no resource ${logicalId}`);
    return r;
  }

  /** The ARN of a resource in the local account and region. */
  arn(logicalId: string): string {
    const { account, region } = this.target;
    const r = this.resource(logicalId);
    const n = this.name(logicalId);
    switch (r.Type) {
      case 'AWS::DynamoDB::Table':
        return `arn:aws:dynamodb:${region}:${account}:table/${n}`;
      case 'AWS::S3::Bucket':
        return `arn:aws:s3:::${n}`;
      case 'AWS::Kinesis::Stream':
        return `arn:aws:kinesis:${region}:${account}:stream/${n}`;
      case 'AWS::Logs::LogGroup':
        return `arn:aws:logs:${region}:${account}:log-group:${n}:*`;
      case 'AWS::StepFunctions::StateMachine':
        return `arn:aws:states:${region}:${account}:stateMachine:${n}`;
      case 'AWS::Lambda::Function':
        return `arn:aws:lambda:${region}:${account}:function:${n}`;
      case 'AWS::IAM::Role':
        return `arn:aws:iam::${account}:role/${n}`;
      default:
        throw new Error(`no local ARN for ${logicalId} (${r.Type})`);
    }
  }

  /** A value of the template with its intrinsics resolved. */
  resolve(v: Json): Json {
    if (Array.isArray(v)) return v.map((x) => this.resolve(x));
    if (v === null || typeof v !== 'object') return v;
    const o = v as Record<string, Json>;
    const keys = Object.keys(o);
    if (keys.length === 1 && (keys[0] === 'Ref' || keys[0]!.startsWith('Fn::'))) return this.intrinsic(keys[0]!, o[keys[0]!]);
    return Object.fromEntries(keys.map((k) => [k, this.resolve(o[k])]));
  }

  private intrinsic(fn: string, arg: Json): string {
    switch (fn) {
      case 'Ref': {
        const id = String(arg);
        if (id === 'AWS::Partition') return 'aws';
        if (id === 'AWS::Region') return this.target.region;
        if (id === 'AWS::AccountId') return this.target.account;
        if (id === 'AWS::URLSuffix') return 'amazonaws.com';
        const r = this.resource(id);
        // CloudFormation's Ref of a state machine is its ARN; of the other types used here, the name.
        return r.Type === 'AWS::StepFunctions::StateMachine' ? this.arn(id) : this.name(id);
      }
      case 'Fn::GetAtt': {
        const [id, attr] = (Array.isArray(arg) ? arg : String(arg).split('.')) as [string, string];
        if (attr === 'Arn') return this.arn(id);
        if (attr === 'Name') return this.name(id);
        throw new Error(`Fn::GetAtt ${id}.${attr} is not resolved locally`);
      }
      case 'Fn::Join': {
        const [sep, parts] = arg as [string, Json[]];
        return parts.map((p) => String(this.resolve(p))).join(sep);
      }
      default:
        throw new Error(`${fn} is not resolved locally (${JSON.stringify(arg)})`);
    }
  }
}

const HANDLER_BY_SERVICE = new Map<string, HandlerName>(Object.entries(SERVICE_NAMES).map(([h, s]) => [s, h as HandlerName]));

/** Every Lambda function of the template (found by its POWERTOOLS_SERVICE_NAME), its environment and policies resolved. */
export function templateFunctions(template: CfnTemplate, target: LocalTarget): Map<HandlerName, TemplateFunction> {
  const r = new TemplateResolver(template, target);
  const out = new Map<HandlerName, TemplateFunction>();
  const policiesOf = new Map<string, { name: string; document: PolicyDocument }[]>();
  const managed = new Set<string>();
  for (const [id, res] of Object.entries(template.Resources)) {
    if (res.Type === 'AWS::IAM::Policy') {
      for (const role of (res.Properties?.Roles ?? []) as { Ref: string }[]) {
        const list = policiesOf.get(role.Ref) ?? [];
        list.push({ name: id, document: r.resolve(res.Properties?.PolicyDocument) as PolicyDocument });
        policiesOf.set(role.Ref, list);
      }
    }
    if (res.Type === 'AWS::IAM::Role') {
      for (const p of (res.Properties?.Policies ?? []) as { PolicyName: string; PolicyDocument: Json }[]) {
        const list = policiesOf.get(id) ?? [];
        list.push({ name: p.PolicyName, document: r.resolve(p.PolicyDocument) as PolicyDocument });
        policiesOf.set(id, list);
      }
      if (((res.Properties?.ManagedPolicyArns as unknown[] | undefined) ?? []).length > 0) managed.add(id);
    }
  }
  for (const [id, res] of Object.entries(template.Resources)) {
    if (res.Type !== 'AWS::Lambda::Function') continue;
    const vars = ((res.Properties?.Environment as { Variables?: Record<string, Json> } | undefined)?.Variables ?? {}) as Record<
      string,
      Json
    >;
    const handler = HANDLER_BY_SERVICE.get(String(vars.POWERTOOLS_SERVICE_NAME));
    if (!handler) throw new Error(`function ${id} has no POWERTOOLS_SERVICE_NAME of functions/contract/telemetry.ts`);
    const role = (res.Properties?.Role as { 'Fn::GetAtt'?: [string, string] } | undefined)?.['Fn::GetAtt']?.[0];
    if (!role) throw new Error(`function ${id} has no role of this template`);
    // Their documents are not in the template: evaluating without them would deny what AWS allows.
    if (managed.has(role)) throw new Error(`the role of ${id} has managed policies, which the local cloud cannot evaluate`);
    out.set(handler, {
      handler,
      logicalId: id,
      roleLogicalId: role,
      environment: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, String(r.resolve(v))])),
      policies: policiesOf.get(role) ?? [],
    });
  }
  return out;
}

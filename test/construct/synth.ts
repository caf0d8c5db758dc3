/**
 * Shared by the construct tests: a Tandem stack synthesized with inline
 * placeholder code (no bundling, so a file synthesizes in seconds), and small
 * readers over the template.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Tandem, type TandemProps } from '../../lib/tandem.ts';

export const PLACEHOLDER = lambda.Code.fromInline('exports.handler = async () => ({ statusCode: 200, body: "{}" });');

export interface Synth {
  readonly app: App;
  readonly stack: Stack;
  readonly tandem: Tandem;
  readonly template: Template;
}

/** Synthesizes a stack with one Tandem; `extend` adds to the stack before synthesis. */
export function synthTandem(props: TandemProps = {}, extend?: (tandem: Tandem, stack: Stack) => void, id = 'Test'): Synth {
  const app = new App();
  const stack = new Stack(app, id, { env: { account: '123456789012', region: 'eu-west-1' } });
  const tandem = new Tandem(stack, 'Tandem', { handlerCode: () => PLACEHOLDER, ...props });
  extend?.(tandem, stack);
  return { app, stack, tandem, template: Template.fromStack(stack) };
}

export type Resource = { Type: string; Properties: Record<string, unknown>; [k: string]: unknown };

/** Resources of one type, keyed by logical id. */
export function resources(template: Template, type: string): Record<string, Resource> {
  return template.findResources(type) as Record<string, Resource>;
}

/** The logical id of a construct's CloudFormation resource. */
export function logicalId(stack: Stack, construct: { node: { defaultChild?: unknown } } | unknown): string {
  const c = construct as { node: { defaultChild?: unknown } };
  const cfn = (c.node.defaultChild ?? construct) as Parameters<Stack['getLogicalId']>[0];
  return stack.getLogicalId(cfn);
}

export interface Statement {
  readonly Effect: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: unknown;
}

/** Every Allow statement of the policies attached to a role (by the role's logical id). */
export function statementsOfRole(template: Template, roleId: string): Statement[] {
  const out: Statement[] = [];
  for (const p of Object.values(resources(template, 'AWS::IAM::Policy'))) {
    const roles = (p.Properties.Roles as { Ref: string }[]).map((r) => r.Ref);
    if (!roles.includes(roleId)) continue;
    for (const s of (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement) if (s.Effect === 'Allow') out.push(s);
  }
  return out;
}

export const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);

/** Logical ids referenced anywhere in a statement's resources (Ref or GetAtt). */
export function referencedIds(s: Statement): string[] {
  const ids: string[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.Ref === 'string') ids.push(o.Ref);
      if (Array.isArray(o['Fn::GetAtt'])) ids.push(String((o['Fn::GetAtt'] as unknown[])[0]));
      Object.values(o).forEach(visit);
    }
  };
  visit(s.Resource);
  return ids;
}

/**
 * The deployable stack: the Tandem construct and the outputs a person needs
 * after `cdk deploy` (API URL, names for the CLI and the consoles). It only
 * composes; everything else lives in the constructs.
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { Tandem, type TandemProps } from './tandem.ts';

export interface TandemStackProps extends StackProps, TandemProps {}

export class TandemStack extends Stack {
  /** The Tandem system of this stack. */
  readonly tandem: Tandem;

  constructor(scope: Construct, id: string, props: TandemStackProps = {}) {
    super(scope, id, props);
    this.tandem = new Tandem(this, 'Tandem', props);
    const t = this.tandem;
    new CfnOutput(this, 'ApiUrl', { value: t.apiUrl, description: 'Base URL of the HTTP API (TANDEM_API_URL)' });
    new CfnOutput(this, 'StreamName', { value: t.stream.streamName, description: 'Kinesis stream' });
    new CfnOutput(this, 'ControlTableName', {
      value: t.controlTable.tableName,
      description: 'Control table (API keys: tandem keys create)',
    });
    new CfnOutput(this, 'SpeedTableName', { value: t.speedTable.tableName });
    new CfnOutput(this, 'BatchViewsTableName', { value: t.batchViewsTable.tableName });
    new CfnOutput(this, 'DedupTableName', { value: t.dedupTable.tableName });
    new CfnOutput(this, 'RawBucketName', {
      value: t.rawBucket.bucketName,
      description: 'Raw archive (empty it before deleting the stack)',
    });
    new CfnOutput(this, 'FailureBucketName', { value: t.failureBucket.bucketName, description: 'On-failure destination' });
    new CfnOutput(this, 'StateMachineArn', { value: t.stateMachine.stateMachineArn, description: 'Batch state machine' });
    new CfnOutput(this, 'BatchEngine', { value: t.batchLayer.engine });
    new CfnOutput(this, 'DashboardName', { value: t.monitoring.dashboard.dashboardName });
  }
}

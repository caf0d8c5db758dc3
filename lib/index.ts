/** The public constructs of Tandem (see docs/deploy.md). */
export { BATCH_ENGINES, type BatchEngine, BatchLayer, type BatchLayerProps, RAW_TABLE_NAME } from './batch-layer.ts';
export type { SettingsProps } from './environment.ts';
export { type FunctionDefaults, NODE_RUNTIME, TandemFunction, type TandemFunctionProps } from './function.ts';
export { ApiAuth, IngestApi, type IngestApiProps } from './ingest-api.ts';
export { Monitoring, type MonitoringProps } from './monitoring.ts';
export { RawArchive, type RawArchiveProps } from './raw-archive.ts';
export { Serving, type ServingProps } from './serving.ts';
export { SpeedLayer, type SpeedLayerProps } from './speed-layer.ts';
export { EventStream, type EventStreamProps } from './stream.ts';
export { Tandem, type TandemProps } from './tandem.ts';
export { TandemStack, type TandemStackProps } from './tandem-stack.ts';

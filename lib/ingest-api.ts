/**
 * The front door: an API Gateway REST API (v1, which LocalStack's free plan
 * also serves) with the contract's routes (functions/contract/routes.ts), an API
 * key check on every route but `/health` (a REQUEST Lambda authorizer, or the
 * handlers themselves where the gateway has no authorizer: ApiAuth), request
 * validation, access and execution logs, stage throttling, JSON error bodies for
 * the gateway's own answers, and optionally a WAF web ACL. It owns the ingest,
 * health and authorizer functions; the serving layer's functions are added as routes.
 */
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import { type HandlerName, ROUTES, type Route } from '../functions/contract/routes.ts';
import { SETTINGS_ENV, STREAM, TABLES } from '../functions/resources.ts';
import { acknowledge, checkRange, invalid } from './common.ts';
import { type FunctionDefaults, functionDefaults, TandemFunction } from './function.ts';
import type { EventStream } from './stream.ts';

/** SHA-256 hex of a key, optionally named: `name:hash` or `hash` (functions/api/keys.ts parseKeyHashes). */
const KEY_HASH_RE = /^(?:[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}:)?[0-9a-fA-F]{64}$/;

/** The value of TANDEM_API_AUTH that has the handlers check the key (functions/api/key-check.ts IN_FUNCTION). */
const IN_FUNCTION = 'in-function';

/** Where the API key of a request is checked. Either way: no key 401, a wrong or revoked key 403. */
export enum ApiAuth {
  /**
   * A REQUEST Lambda authorizer (identity source `x-api-key`) in front of every keyed
   * route; API Gateway caches its answer per key (`authorizerCacheTtl`).
   */
  AUTHORIZER = 'authorizer',
  /**
   * No authorizer: every function of a keyed route checks `x-api-key` itself, with the
   * authorizer's logic, before routing (functions/api/key-check.ts). One control-table
   * read per request, no cache, so a revoked key stops at once. For API Gateways that
   * have no Lambda authorizers, such as LocalStack's free plan.
   */
  IN_FUNCTION = 'in-function',
}

export interface IngestApiProps extends FunctionDefaults {
  /** The event stream ingest writes to. */
  readonly stream: EventStream;
  /** The control table: the authorizer looks API keys up there (`apikey / <sha256>`). */
  readonly controlTable: dynamodb.ITable;
  /** Views and settings variables (lib/environment.ts). */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * API keys accepted besides those in the control table, as SHA-256 hex
   * hashes, optionally named (`name:hash`). Keys in the table are created and
   * revoked with `tandem keys` without a deploy; these need one.
   *
   * @default - only keys in the control table
   */
  readonly apiKeyHashes?: string[];
  /**
   * Origin allowed to call the API from a browser (the dashboard).
   *
   * @default '*' (the key travels in a header, never a cookie)
   */
  readonly corsAllowOrigin?: string;
  /**
   * Steady-state requests per second of the stage (all routes together).
   *
   * @default 500
   */
  readonly throttlingRateLimit?: number;
  /**
   * Burst requests of the stage.
   *
   * @default 1000
   */
  readonly throttlingBurstLimit?: number;
  /**
   * Where the API key is checked: by a REQUEST authorizer, or by the functions
   * themselves (for an API Gateway without Lambda authorizers).
   *
   * @default ApiAuth.AUTHORIZER
   */
  readonly apiAuth?: ApiAuth;
  /**
   * Whether API Gateway checks the shape of request bodies (POST /events: an object
   * or an array, for `application/json`) before calling a function. The functions
   * validate every body anyway; turn it off where the gateway validates every body
   * against the JSON model whatever its type and answers without the contract's
   * error body (LocalStack: docs/deploy.md).
   *
   * @default true
   */
  readonly validateRequestBody?: boolean;
  /**
   * How long API Gateway caches the authorizer's answer per key; a revoked
   * key keeps working at most this long (ApiAuth.AUTHORIZER only).
   *
   * @default Duration.minutes(5)
   */
  readonly authorizerCacheTtl?: Duration;
  /**
   * Name of the deployment stage (part of the URL).
   *
   * @default 'v1'
   */
  readonly stageName?: string;
  /**
   * Create a WAF web ACL (AWS IP reputation list, known bad inputs, a rate
   * limit per client IP) and associate it with the stage.
   *
   * @default false
   */
  readonly createWebAcl?: boolean;
  /**
   * Requests per client IP in 5 minutes above which the created web ACL blocks.
   *
   * @default 20000
   */
  readonly webAclRateLimit?: number;
  /**
   * ARN of an existing WAFv2 web ACL (REGIONAL) to associate with the stage.
   *
   * @default - none (see createWebAcl)
   */
  readonly webAclArn?: string;
}

/** The REST API with its key check, and the ingest and health functions. */
export class IngestApi extends Construct {
  /** The REST API. */
  readonly api: apigateway.RestApi;
  /** Where the API key is checked. */
  readonly apiAuth: ApiAuth;
  /** The REQUEST authorizer (identity source `x-api-key`); none under ApiAuth.IN_FUNCTION. */
  readonly authorizer?: apigateway.RequestAuthorizer;
  /** The ingest function (POST /events). */
  readonly ingestFunction: lambda.Function;
  /** The health function (GET /health). */
  readonly healthFunction: lambda.Function;
  /** The authorizer function; none under ApiAuth.IN_FUNCTION. */
  readonly authorizerFunction?: lambda.Function;
  /** The routes wired so far. */
  readonly routes: Route[] = [];
  /** Base URL of the stage, ending in `/`. */
  readonly url: string;
  /** Variables every API function gets (CORS origin). */
  readonly apiEnvironment: Readonly<Record<string, string>>;

  private readonly validator: apigateway.RequestValidator;
  private readonly eventsModel: apigateway.Model;
  private readonly preflight = new Set<string>();
  private readonly controlTable: dynamodb.ITable;
  /** Variables of a function that checks keys itself (ApiAuth.IN_FUNCTION). */
  private readonly keyCheckEnvironment: Readonly<Record<string, string>>;
  private readonly keyCheckers = new Set<lambda.IFunction>();

  constructor(scope: Construct, id: string, props: IngestApiProps) {
    super(scope, id);
    checkRange(this, 'throttlingRateLimit', props.throttlingRateLimit, 1, 100_000);
    checkRange(this, 'throttlingBurstLimit', props.throttlingBurstLimit, 1, 100_000);
    checkRange(this, 'webAclRateLimit', props.webAclRateLimit, 100, 2_000_000_000);
    for (const h of props.apiKeyHashes ?? []) {
      if (!KEY_HASH_RE.test(h))
        invalid(this, `apiKeyHashes entries must be a SHA-256 hex hash, optionally "name:hash". Received ${JSON.stringify(h)}`);
    }
    if (props.createWebAcl && props.webAclArn)
      invalid(this, `give either createWebAcl or webAclArn, not both. Received webAclArn ${props.webAclArn}`);
    const origin = props.corsAllowOrigin ?? '*';
    this.apiEnvironment = { [SETTINGS_ENV.corsOrigin]: origin };
    this.apiAuth = props.apiAuth ?? ApiAuth.AUTHORIZER;
    if (!Object.values(ApiAuth).includes(this.apiAuth))
      invalid(this, `apiAuth must be one of ${Object.values(ApiAuth).join(', ')}. Received ${JSON.stringify(this.apiAuth)}`);
    if (this.apiAuth === ApiAuth.IN_FUNCTION && props.authorizerCacheTtl)
      invalid(this, `authorizerCacheTtl applies to ApiAuth.AUTHORIZER only. Received ${props.authorizerCacheTtl.toHumanString()}`);
    this.controlTable = props.controlTable;
    const keyEnvironment = {
      [TABLES.control.env]: props.controlTable.tableName,
      ...(props.apiKeyHashes?.length ? { [SETTINGS_ENV.apiKeyHashes]: props.apiKeyHashes.join(',') } : {}),
    };
    this.keyCheckEnvironment = { [SETTINGS_ENV.apiAuth]: IN_FUNCTION, ...keyEnvironment };
    const defaults = functionDefaults(props);

    this.ingestFunction = new TandemFunction(this, 'IngestFunction', {
      ...defaults,
      handler: 'ingest',
      memorySize: 512,
      timeout: Duration.seconds(29),
      environment: { ...props.environment, ...this.apiEnvironment, [STREAM.env]: props.stream.stream.streamName },
    }).function;
    props.stream.grantIngest(this.ingestFunction);
    this.healthFunction = new TandemFunction(this, 'HealthFunction', {
      ...defaults,
      handler: 'health',
      memorySize: 128,
      timeout: Duration.seconds(5),
      environment: { ...this.apiEnvironment },
    }).function;
    if (this.apiAuth === ApiAuth.AUTHORIZER) {
      this.authorizerFunction = new TandemFunction(this, 'AuthorizerFunction', {
        ...defaults,
        handler: 'authorizer',
        memorySize: 256,
        timeout: Duration.seconds(10),
        environment: keyEnvironment,
      }).function;
      this.grantKeyRead(this.authorizerFunction);
    }

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.api = new apigateway.RestApi(this, 'Resource', {
      restApiName: `${Stack.of(this).stackName}-api`,
      description: 'Tandem HTTP API: POST /events, GET /views, GET /views/{name}, GET /status, batch runs, GET /health',
      endpointTypes: [apigateway.EndpointType.REGIONAL],
      // Compressed bodies reach the handlers byte-exact (as base64) when sent as one of these types;
      // JSON stays text, so a 5 MB JSON body still fits Lambda's 6 MB invocation payload.
      binaryMediaTypes: ['application/gzip', 'application/x-gzip', 'application/octet-stream'],
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: props.stageName ?? 'v1',
        accessLogDestination: new apigateway.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigateway.AccessLogFormat.jsonWithStandardFields(),
        loggingLevel: apigateway.MethodLoggingLevel.INFO,
        // Request and response bodies carry event data and keys: never in execution logs.
        dataTraceEnabled: false,
        metricsEnabled: true,
        tracingEnabled: true,
        throttlingRateLimit: props.throttlingRateLimit ?? 500,
        throttlingBurstLimit: props.throttlingBurstLimit ?? 1000,
      },
    });
    this.url = this.api.url;

    if (this.authorizerFunction) {
      this.authorizer = new apigateway.RequestAuthorizer(this, 'Authorizer', {
        handler: this.authorizerFunction,
        identitySources: [apigateway.IdentitySource.header('x-api-key')],
        resultsCacheTtl: props.authorizerCacheTtl ?? Duration.minutes(5),
      });
    }
    this.validator = new apigateway.RequestValidator(this, 'Validator', {
      restApi: this.api,
      validateRequestBody: props.validateRequestBody ?? true,
      validateRequestParameters: true,
    });
    // The gateway checks only the shape (an object or an array); events are validated one by
    // one in the handler, which accepts the good events beside a bad one (207).
    this.eventsModel = this.api.addModel('EventsBody', {
      contentType: 'application/json',
      schema: {
        schema: apigateway.JsonSchemaVersion.DRAFT4,
        title: 'EventsBody',
        description: 'One event, an array of events, or {"events": [...]}',
        type: [apigateway.JsonSchemaType.OBJECT, apigateway.JsonSchemaType.ARRAY],
      },
    });
    this.addGatewayResponses(origin);

    for (const route of ROUTES) {
      if (route.handler === 'ingest') this.addRoute(route, this.ingestFunction);
      if (route.handler === 'health') this.addRoute(route, this.healthFunction);
    }

    if (props.createWebAcl) this.createWebAcl(props.webAclRateLimit ?? 20_000);
    else if (props.webAclArn) {
      new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
        resourceArn: this.api.deploymentStage.stageArn,
        webAclArn: props.webAclArn,
      });
    } else {
      acknowledge(this.api.deploymentStage, {
        APIG3:
          'WAF is optional (createWebAcl or webAclArn); without it every route but /health needs an API key and the stage is throttled',
      });
    }
    if (props.validateRequestBody === false) {
      acknowledge(this.api, {
        APIG2:
          'Parameters are validated here; bodies in every function (functions/api/http.ts, functions/core/events.ts), ' +
          'for gateways that validate every body as JSON whatever its type (validateRequestBody: false)',
      });
    }
    acknowledge(this.api, {
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]':
        'The account-level API Gateway logging role: AWS offers only this managed policy for it, and execution logging (APIG6) needs it',
    });
  }

  /**
   * Wires one route of the contract to a function: a Lambda proxy method, the
   * key check unless the route is public (the authorizer, or under
   * ApiAuth.IN_FUNCTION the function's own: it gets the variables and the
   * key-item read for it, so it must be a lambda.Function), path parameters
   * required, and an OPTIONS method answered by the same function (CORS preflight).
   */
  addRoute(route: Route, fn: lambda.IFunction): apigateway.Method {
    if (this.routes.some((r) => r.method === route.method && r.path === route.path))
      invalid(this, `route ${route.method} ${route.path} is wired twice`);
    const inFunction = route.auth && this.apiAuth === ApiAuth.IN_FUNCTION;
    if (inFunction) this.checkKeysIn(fn, route);
    const resource = this.api.root.resourceForPath(route.path);
    const integration = new apigateway.LambdaIntegration(fn, { proxy: true, allowTestInvoke: false });
    const params = Object.fromEntries([...route.path.matchAll(/\{(\w+)\}/g)].map((m) => [`method.request.path.${m[1]}`, true]));
    const method = resource.addMethod(route.method, integration, {
      requestValidator: this.validator,
      requestParameters: params,
      ...(route.method === 'POST' && route.handler === 'ingest' ? { requestModels: { 'application/json': this.eventsModel } } : {}),
      ...(route.auth && this.authorizer
        ? { authorizer: this.authorizer, authorizationType: apigateway.AuthorizationType.CUSTOM }
        : { authorizationType: apigateway.AuthorizationType.NONE }),
    });
    if (!route.auth) {
      acknowledge(method, {
        APIG4: `${route.method} ${route.path} is public by contract (liveness probe; touches no data)`,
        COG4: `${route.method} ${route.path} is public by contract (liveness probe; touches no data)`,
      });
    } else if (inFunction) {
      const reason =
        'ApiAuth.IN_FUNCTION: the function checks x-api-key before routing, with the authorizer logic (functions/api/key-check.ts), ' +
        'for API Gateways without Lambda authorizers';
      acknowledge(method, { APIG4: reason, COG4: reason });
    } else {
      acknowledge(method, {
        COG4:
          'Callers are machines holding API keys, checked by the REQUEST Lambda authorizer ' +
          '(hashed keys in the control table), not Cognito users',
      });
    }
    if (!this.preflight.has(route.path)) {
      this.preflight.add(route.path);
      // The handlers answer preflights themselves (functions/api/http.ts), so CORS headers have one source.
      const options = resource.addMethod('OPTIONS', integration, {
        authorizationType: apigateway.AuthorizationType.NONE,
        requestValidator: this.validator,
        requestParameters: params,
      });
      acknowledge(options, {
        APIG4: 'CORS preflight: browsers send OPTIONS without credentials, so it cannot require the API key',
        COG4: 'CORS preflight: browsers send OPTIONS without credentials, so it cannot require the API key',
      });
    }
    this.routes.push(route);
    return method;
  }

  /**
   * Has `fn` check API keys itself: the variables of functions/api/key-check.ts and the
   * read of key items (once per function).
   */
  private checkKeysIn(fn: lambda.IFunction, route: Route): void {
    if (this.keyCheckers.has(fn)) return;
    if (!(fn instanceof lambda.Function)) {
      invalid(
        this,
        `under ApiAuth.IN_FUNCTION the function of ${route.method} ${route.path} checks keys itself, ` +
          `so it must be a lambda.Function (its environment is set here). Received ${fn.node.path}`,
      );
    }
    for (const [k, v] of Object.entries(this.keyCheckEnvironment)) fn.addEnvironment(k, v);
    this.grantKeyRead(fn);
    this.keyCheckers.add(fn);
  }

  /** One item read per key check: `apikey / <sha256>`; nothing else of the control table. */
  private grantKeyRead(grantee: iam.IGrantable): void {
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['dynamodb:GetItem'],
      resourceArns: [this.controlTable.tableArn],
      conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['apikey'] } },
    });
  }

  /** The handler names of the routes still missing (for the Tandem construct's completeness check). */
  missingHandlers(): HandlerName[] {
    return ROUTES.filter((r) => !this.routes.some((w) => w.method === r.method && w.path === r.path)).map((r) => r.handler);
  }

  /** API answers with a 5xx status (Sum, 5 minutes). */
  metricServerErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricServerError({ statistic: 'Sum', ...props });
  }

  /** API answers with a 4xx status, throttling (429) included (Sum, 5 minutes). */
  metricClientErrors(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricClientError({ statistic: 'Sum', ...props });
  }

  /** Requests (Sum, 5 minutes). */
  metricRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricCount({ statistic: 'Sum', ...props });
  }

  /** End-to-end latency (p99, 5 minutes). */
  metricLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.api.metricLatency({ statistic: 'p99', ...props });
  }

  /** Answers of the gateway itself in the contract's `{ "error", "field"? }` shape, with CORS headers. */
  private addGatewayResponses(origin: string): void {
    const headers = { 'Access-Control-Allow-Origin': `'${origin}'`, 'Content-Type': "'application/json'" };
    const body = (error: string, field?: string) => ({
      'application/json': JSON.stringify({ error, ...(field ? { field } : {}) }),
    });
    const add = (id: string, type: apigateway.ResponseType, statusCode: string | undefined, template: Record<string, string>) =>
      this.api.addGatewayResponse(id, { type, ...(statusCode ? { statusCode } : {}), responseHeaders: headers, templates: template });
    add('Unauthorized', apigateway.ResponseType.UNAUTHORIZED, '401', body('the x-api-key header is missing', 'x-api-key'));
    add('AccessDenied', apigateway.ResponseType.ACCESS_DENIED, '403', body('the API key is not valid or was revoked', 'x-api-key'));
    add(
      'BadBody',
      apigateway.ResponseType.BAD_REQUEST_BODY,
      '400',
      body('the body must be JSON: one event, an array of events, or {"events": [...]}', 'body'),
    );
    add('TooLarge', apigateway.ResponseType.REQUEST_TOO_LARGE, '413', body('the request body is larger than the limit (5 MB)', 'body'));
    add('Throttled', apigateway.ResponseType.THROTTLED, '429', body('too many requests, retry with backoff'));
    // No IAM auth here, so a missing token means no such route or method: 404 as in the local cloud,
    // not the gateway's 403, which the contract keeps for a bad key.
    add('NoRoute', apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, '404', body('no route for this method and path'));
    // No status code on the defaults: API Gateway would apply it to every 4xx/5xx type not set above
    // (415, usage-plan 429, integration timeouts 504, ...); without one each keeps its own.
    add('Default4xx', apigateway.ResponseType.DEFAULT_4XX, undefined, { 'application/json': '{"error": $context.error.messageString}' });
    add('Default5xx', apigateway.ResponseType.DEFAULT_5XX, undefined, { 'application/json': '{"error": $context.error.messageString}' });
  }

  private createWebAcl(rateLimit: number): void {
    const managed = (name: string, priority: number): wafv2.CfnWebACL.RuleProperty => ({
      name,
      priority,
      overrideAction: { none: {} },
      statement: { managedRuleGroupStatement: { vendorName: 'AWS', name } },
      visibilityConfig: { cloudWatchMetricsEnabled: true, sampledRequestsEnabled: true, metricName: name },
    });
    const acl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: { cloudWatchMetricsEnabled: true, sampledRequestsEnabled: true, metricName: 'tandem-api' },
      // Not the common rule set: its SizeRestrictions_BODY blocks bodies over 8 KB, and ingest takes up to 5 MB.
      rules: [
        managed('AWSManagedRulesAmazonIpReputationList', 0),
        managed('AWSManagedRulesKnownBadInputsRuleSet', 1),
        {
          name: 'rate-per-ip',
          priority: 2,
          action: { block: {} },
          statement: { rateBasedStatement: { limit: rateLimit, aggregateKeyType: 'IP' } },
          visibilityConfig: { cloudWatchMetricsEnabled: true, sampledRequestsEnabled: true, metricName: 'rate-per-ip' },
        },
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', { resourceArn: this.api.deploymentStage.stageArn, webAclArn: acl.attrArn });
  }
}

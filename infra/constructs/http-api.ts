import { Duration, type RemovalPolicy } from "aws-cdk-lib";
import { AccessLogFormat } from "aws-cdk-lib/aws-apigateway";
import {
  type CfnStage,
  HttpApi,
  HttpMethod,
  HttpNoneAuthorizer,
  type HttpRoute,
  type HttpStage,
  type IHttpRouteAuthorizer,
  LogGroupLogDestination,
} from "aws-cdk-lib/aws-apigatewayv2";
import { HttpIamAuthorizer } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import type { IKey } from "aws-cdk-lib/aws-kms";
import type { IFunction } from "aws-cdk-lib/aws-lambda";
import { LogGroup, type RetentionDays } from "aws-cdk-lib/aws-logs";
import { NagSuppressions } from "cdk-nag";
import { Construct } from "constructs";
import type { FunctionName, RouteDefinition } from "../../shared/resources.ts";
import type { Throttle } from "../settings.ts";

export interface MasklineHttpApiProps {
  apiName: string;
  /** Throttle of each Twilio webhook route. */
  twilioThrottle: Throttle;
  /** Throttle of each product route and /health, and the stage default. */
  productThrottle: Throttle;
  logRetention: RetentionDays;
  /** Encrypts the access logs (the data key). */
  logKey: IKey;
  removalPolicy: RemovalPolicy;
}

/** What API Gateway writes per request: no bodies, no query strings, no headers. */
const accessLogFormat = {
  requestId: "$context.requestId",
  requestTime: "$context.requestTime",
  ip: "$context.identity.sourceIp",
  userAgent: "$context.identity.userAgent",
  caller: "$context.identity.userArn",
  routeKey: "$context.routeKey",
  status: "$context.status",
  protocol: "$context.protocol",
  responseLength: "$context.responseLength",
  latencyMs: "$context.responseLatency",
  integrationLatencyMs: "$context.integrationLatency",
  integrationError: "$context.integrationErrorMessage",
  authorizerError: "$context.authorizer.error",
};

/**
 * The HTTP API. Created before the functions (they need its URL for Twilio signature checks), then
 * `addRoutes` attaches the routes of `shared/resources.ts`: product routes with IAM (SigV4) authorization,
 * Twilio routes open (the function checks X-Twilio-Signature before storing anything), /health open.
 */
export class MasklineHttpApi extends Construct {
  readonly api: HttpApi;
  readonly stage: HttpStage;
  readonly accessLogs: LogGroup;
  readonly routes: { definition: RouteDefinition; route: HttpRoute }[] = [];
  private readonly props: MasklineHttpApiProps;

  constructor(scope: Construct, id: string, props: MasklineHttpApiProps) {
    super(scope, id);
    this.props = props;
    this.api = new HttpApi(this, "Api", {
      apiName: props.apiName,
      description: "Maskline: Twilio webhooks and the product API",
      createDefaultStage: false,
    });
    this.accessLogs = new LogGroup(this, "AccessLogs", {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: props.removalPolicy,
    });
    // The `$default` stage: no stage prefix in the URL, so the path a Lambda sees (rawPath) is the path Twilio
    // signed, and PUBLIC_BASE_URL + rawPath reproduces the signed URL.
    this.stage = this.api.addStage("DefaultStage", {
      stageName: "$default",
      autoDeploy: true,
      // The default for any route without its own settings; every route of `routes` gets its own below.
      throttle: props.productThrottle,
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(accessLogFormat)),
      },
    });
  }

  /**
   * Separate throttles: a burst of product calls must not push Twilio's webhooks into 429s, and a flood
   * of webhooks must not starve the product API. HTTP API route settings are keyed by route key; the stage
   * must be created after the routes it names.
   */
  private throttleRoute(definition: RouteDefinition, route: HttpRoute): void {
    const throttle = definition.auth === "twilio" ? this.props.twilioThrottle : this.props.productThrottle;
    // RouteSettings is a map CloudFormation reads with its own (Pascal-case) property names.
    const stage = this.stage.node.defaultChild as CfnStage;
    // A "." in the route key (/openapi.json) would be read as a path separator: CDK takes "\." literally.
    const routeKey = `${definition.method} ${definition.path}`.replaceAll(".", "\\.");
    stage.addPropertyOverride(`RouteSettings.${routeKey}`, {
      ThrottlingRateLimit: throttle.rateLimit,
      ThrottlingBurstLimit: throttle.burstLimit,
    });
    this.stage.node.addDependency(route);
  }

  /** `https://{apiId}.execute-api.{region}.{urlSuffix}` — no trailing slash; the URL Twilio signs. */
  get endpoint(): string {
    return this.api.apiEndpoint;
  }

  addRoutes(definitions: readonly RouteDefinition[], handlers: Record<FunctionName, IFunction>): void {
    const integrations = new Map<FunctionName, HttpLambdaIntegration>();
    const integrationFor = (name: FunctionName) => {
      let integration = integrations.get(name);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${name}Integration`, handlers[name], {
          timeout: Duration.seconds(29),
        });
        integrations.set(name, integration);
      }
      return integration;
    };
    for (const definition of definitions) {
      const authorizer: IHttpRouteAuthorizer =
        definition.auth === "product" ? new HttpIamAuthorizer() : new HttpNoneAuthorizer();
      const [route] = this.api.addRoutes({
        path: definition.path,
        methods: [HttpMethod[definition.method]],
        integration: integrationFor(definition.function),
        authorizer,
      });
      if (!route) throw new Error(`no route created for ${definition.method} ${definition.path}`);
      this.routes.push({ definition, route });
      this.throttleRoute(definition, route);
      if (definition.auth === "twilio") {
        NagSuppressions.addResourceSuppressions(route, [
          {
            id: "AwsSolutions-APIG4",
            reason:
              "Twilio cannot sign requests with SigV4 or send a bearer token. The inbound function verifies " +
              "X-Twilio-Signature (HMAC-SHA1 of the public URL and form parameters with the account auth " +
              "token, read from Secrets Manager) before anything is stored, and answers 403 otherwise.",
          },
        ]);
      } else if (definition.auth === "none") {
        NagSuppressions.addResourceSuppressions(route, [
          {
            id: "AwsSolutions-APIG4",
            reason:
              definition.publicBecause ??
              "Liveness check for load balancers and uptime probes: read-only, returns only ok/error per " +
                "dependency, no data and no secrets (the HTTP contract: GET /health is for anyone).",
          },
        ]);
      }
    }
  }
}

import { CfnOutput, Duration, Stack, type StackProps } from "aws-cdk-lib";
import type { CfnTable } from "aws-cdk-lib/aws-dynamodb";
import { Rule, Schedule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { type IRole, PolicyStatement } from "aws-cdk-lib/aws-iam";
import { FilterCriteria, FilterRule, StartingPosition } from "aws-cdk-lib/aws-lambda";
import { DynamoEventSource, SqsDlq, SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import { NagSuppressions } from "cdk-nag";
import type { Construct } from "constructs";
import {
  awsCallConfigSchema,
  coreConfigSchema,
  messagingServiceConfigSchema,
  parseConfig,
  recyclerConfigSchema,
  twilioConfigSchema,
} from "../../shared/config.ts";
import {
  eventBus,
  type FunctionName,
  forwardConsumer,
  forwardQueue,
  functions,
  publisherStream,
  recyclerSchedule,
  routes,
} from "../../shared/resources.ts";
import { lifecycleFor } from "../constructs/data.ts";
import { EventsDelivery } from "../constructs/events-delivery.ts";
import { MasklineHttpApi } from "../constructs/http-api.ts";
import { MasklineFunction } from "../constructs/maskline-function.ts";
import { MasklineMonitoring } from "../constructs/monitoring.ts";
import type { MasklineSettings, StageNames } from "../settings.ts";
import type { StatefulStack } from "./stateful-stack.ts";

export interface AppStackProps extends StackProps {
  stateful: StatefulStack;
  settings: MasklineSettings;
  names: StageNames;
}

/**
 * Read the Twilio secret: GetSecretValue on that one secret, and Decrypt on its key only through Secrets
 * Manager. Granted on the role's own policy: `Secret.grantRead` would also edit the key policy in the
 * stateful stack and make it depend on this one (a cycle across the stateful/stateless split). The key
 * policy already delegates to IAM in this account.
 */
function grantSecretRead(
  stateful: StatefulStack,
  role: IRole,
  secret: "twilioSecret" | "pseudonymSecret" = "twilioSecret",
): void {
  role.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ["secretsmanager:GetSecretValue"],
      resources: [stateful[secret].secretArn],
    }),
  );
  role.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ["kms:Decrypt"],
      resources: [stateful.key.keyArn],
      conditions: {
        StringEquals: { "kms:ViaService": `secretsmanager.${Stack.of(role).region}.amazonaws.com` },
      },
    }),
  );
}

/**
 * The table operations the functions call (the adapters' GetItem, BatchGetItem, Query, Put/Update/Delete
 * alone and inside TransactWriteItems, whose items are authorized one by one as Put/Update/Delete/
 * ConditionCheck). Not CDK's `grantReadWriteData`, which adds Scan (a read of every number in the table),
 * BatchWriteItem, DescribeTable and the stream reads: no function uses them.
 */
export const TABLE_DATA_ACTIONS = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:DeleteItem",
  "dynamodb:ConditionCheckItem",
];

/** The item operations of `TABLE_DATA_ACTIONS` on the table and its index, and the data key they need. */
function grantTableData(stateful: StatefulStack, role: IRole): void {
  stateful.table.grant(role, ...TABLE_DATA_ACTIONS);
  // What `grantReadWriteData` grants on the key (SSE-KMS of the table), on the role's own policy.
  stateful.key.grant(
    role,
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
  );
}

/** Retries of a failing stream batch before it goes to the PublisherFailures queue. */
export const PUBLISHER_RETRY_ATTEMPTS = publisherStream.retryAttempts;

/** Lambda's guidance for SQS event sources: visibility timeout at least six times the function timeout. */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

/**
 * Everything stateless: the five functions, the HTTP API, the schedule, the event source mappings, alarms
 * and dashboard. Safe to redeploy or replace; it only references the stateful stack.
 */
export class AppStack extends Stack {
  readonly functions: Record<FunctionName, MasklineFunction>;
  readonly httpApi: MasklineHttpApi;
  readonly monitoring: MasklineMonitoring;
  readonly eventsDelivery: EventsDelivery | undefined;

  constructor(scope: Construct, id: string, props: AppStackProps) {
    const { stateful, settings, names, ...stackProps } = props;
    super(scope, id, stackProps);
    const { removalPolicy } = lifecycleFor(settings.production);

    if (
      forwardQueue.visibilityTimeoutSeconds <
      VISIBILITY_TIMEOUT_FACTOR * functions.forward.timeoutSeconds
    ) {
      throw new Error(
        `forward queue visibility timeout (${forwardQueue.visibilityTimeoutSeconds}s) must be at least ` +
          `${VISIBILITY_TIMEOUT_FACTOR}x the forward function timeout (${functions.forward.timeoutSeconds}s)`,
      );
    }

    this.httpApi = new MasklineHttpApi(this, "Http", {
      apiName: names.apiName,
      twilioThrottle: settings.capacity.twilio,
      productThrottle: settings.capacity.product,
      logRetention: settings.logRetention,
      logKey: stateful.key,
      removalPolicy,
    });
    // Twilio signs the exact URL it calls; the functions check signatures against this base.
    const publicBaseUrl = settings.publicBaseUrl ?? this.httpApi.endpoint;

    // Defaults come from the shared schema the functions parse at cold start; validated here too.
    const core = parseConfig(coreConfigSchema, {
      QUARANTINE_SECONDS: this.node.tryGetContext("maskline:quarantineSeconds"),
      MESSAGE_RETENTION_HOURS: this.node.tryGetContext("maskline:messageRetentionHours"),
      MAX_PROXIES_PER_PARTICIPANT: this.node.tryGetContext("maskline:maxProxiesPerParticipant"),
    });
    const recyclerConfig = parseConfig(recyclerConfigSchema, {
      AUTO_TOP_UP: String(this.node.tryGetContext("maskline:autoTopUp") ?? "false"),
      MAX_POOL_SIZE: this.node.tryGetContext("maskline:maxPoolSize"),
      POOL_LOW_HEADROOM: this.node.tryGetContext("maskline:poolLowHeadroom"),
      // Stop starting new work well before the function times out.
      RECYCLER_BUDGET_MS: String(Math.max(1, functions.recycler.timeoutSeconds - 15) * 1000),
    });

    const calls = parseConfig(awsCallConfigSchema, {});
    const twilioCalls = parseConfig(twilioConfigSchema, { TWILIO_SECRET_ARN: "validated-below" });
    const messaging = parseConfig(messagingServiceConfigSchema, {
      TWILIO_MESSAGING_SERVICE_SID: this.node.tryGetContext("maskline:messagingServiceSid"),
    });
    // A2P 10DLC: the forwarder names the service on every send, the recycler adds bought numbers to it.
    const a2p: Record<string, string> = messaging.TWILIO_MESSAGING_SERVICE_SID
      ? { TWILIO_MESSAGING_SERVICE_SID: messaging.TWILIO_MESSAGING_SERVICE_SID }
      : {};

    const common = {
      // Every SDK call fails fast on a hung dependency (the SDK retries it), well inside the function timeout.
      AWS_CALL_TIMEOUT_MS: String(calls.AWS_CALL_TIMEOUT_MS),
      AWS_CONNECT_TIMEOUT_MS: String(calls.AWS_CONNECT_TIMEOUT_MS),
      TABLE_NAME: stateful.table.tableName,
      QUARANTINE_SECONDS: String(core.QUARANTINE_SECONDS),
      MESSAGE_RETENTION_HOURS: String(core.MESSAGE_RETENTION_HOURS),
      // A closed session's items expire this many days after it closed: the archive keeps its events as long.
      SESSION_RETENTION_DAYS: String(settings.sessionRetentionDays),
      // Unset: no cap (every session gets its own proxy per participant).
      ...(core.MAX_PROXIES_PER_PARTICIPANT === undefined
        ? {}
        : { MAX_PROXIES_PER_PARTICIPANT: String(core.MAX_PROXIES_PER_PARTICIPANT) }),
    };
    const queueUrl = stateful.forwardQueue.queueUrl;
    const secretArn = stateful.twilioSecret.secretArn;
    const twilioEnv = {
      TWILIO_SECRET_ARN: secretArn,
      // A token put in the secret is in force everywhere within this age (rotation without redeploy).
      TWILIO_SECRET_MAX_AGE_SECONDS: String(twilioCalls.TWILIO_SECRET_MAX_AGE_SECONDS),
      TWILIO_TIMEOUT_MS: String(twilioCalls.TWILIO_TIMEOUT_MS),
    };
    // Strangers and erased people are stored as keyed hashes; the key is read on first use.
    const pseudonymEnv = { PSEUDONYM_SECRET_ARN: stateful.pseudonymSecret.secretArn };
    const environments: Record<FunctionName, Record<string, string>> = {
      allocate: { ...common, FORWARD_QUEUE_URL: queueUrl, MASKLINE_AUTH: "iam", ...pseudonymEnv },
      inbound: {
        ...common,
        FORWARD_QUEUE_URL: queueUrl,
        PUBLIC_BASE_URL: publicBaseUrl,
        ...twilioEnv,
        ...pseudonymEnv,
        ...settings.messaging,
      },
      forward: {
        ...common,
        FORWARD_QUEUE_URL: queueUrl,
        PUBLIC_BASE_URL: publicBaseUrl,
        ...twilioEnv,
        ...a2p,
        ...pseudonymEnv,
        // Both read the messaging configuration (`messagingFromEnv`): the same values in each.
        ...settings.messaging,
      },
      recycler: {
        ...common,
        PUBLIC_BASE_URL: publicBaseUrl,
        ...twilioEnv,
        ...a2p,
        AUTO_TOP_UP: String(recyclerConfig.AUTO_TOP_UP),
        MAX_POOL_SIZE: String(recyclerConfig.MAX_POOL_SIZE),
        POOL_LOW_HEADROOM: String(recyclerConfig.POOL_LOW_HEADROOM),
        RECYCLER_BUDGET_MS: String(recyclerConfig.RECYCLER_BUDGET_MS),
        RECYCLER_BATCH_SIZE: String(recyclerConfig.RECYCLER_BATCH_SIZE),
      },
      publisher: {
        AWS_CALL_TIMEOUT_MS: common.AWS_CALL_TIMEOUT_MS,
        AWS_CONNECT_TIMEOUT_MS: common.AWS_CONNECT_TIMEOUT_MS,
        EVENT_BUS_NAME: stateful.bus.eventBusName,
        FORWARD_QUEUE_URL: queueUrl,
        PUBLISHER_FAILURES_QUEUE_URL: stateful.publisherFailures.queueUrl,
      },
    };

    const build = (name: FunctionName) =>
      new MasklineFunction(this, `${name[0]?.toUpperCase()}${name.slice(1)}`, {
        definition: functions[name],
        environment: environments[name],
        logRetention: settings.logRetention,
        logKey: stateful.key,
        logLevel: settings.logLevel,
        removalPolicy,
      });
    this.functions = {
      allocate: build("allocate"),
      inbound: build("inbound"),
      forward: build("forward"),
      recycler: build("recycler"),
      publisher: build("publisher"),
    };
    const { allocate, inbound, forward, recycler, publisher } = this.functions;

    // Least privilege, function by function.
    grantTableData(stateful, allocate.role);
    stateful.forwardQueue.grantSendMessages(allocate.role);
    grantSecretRead(stateful, allocate.role, "pseudonymSecret");

    grantTableData(stateful, inbound.role);
    stateful.forwardQueue.grantSendMessages(inbound.role);
    grantSecretRead(stateful, inbound.role);
    grantSecretRead(stateful, inbound.role, "pseudonymSecret");

    grantTableData(stateful, forward.role);
    grantSecretRead(stateful, forward.role);
    grantSecretRead(stateful, forward.role, "pseudonymSecret");
    forward.fn.addEventSource(
      new SqsEventSource(stateful.forwardQueue, {
        // Up to 10 sessions per invocation, processed concurrently by the function (order kept per session).
        batchSize: forwardConsumer.batchSize,
        reportBatchItemFailures: true,
        // Sized from the target load (infra/settings.ts): enough to keep up, few enough that a backlog
        // drains without starving the other functions of the account's concurrency.
        maxConcurrency: settings.capacity.forwardMaxConcurrency,
      }),
    );

    grantTableData(stateful, recycler.role);
    // The recycler talks to Twilio only to buy numbers; without top-up it gets no access to the secret.
    if (recyclerConfig.AUTO_TOP_UP) grantSecretRead(stateful, recycler.role);
    new Rule(this, recyclerSchedule.id, {
      description: "Expire sessions, end quarantines, report pool health",
      schedule: Schedule.rate(Duration.minutes(recyclerSchedule.rateMinutes)),
      // Delivery retries only while within one tick; a run that fails is not retried by Lambda either:
      // the next tick redoes the work (the recycler is idempotent), and the Errors alarm reports failures.
      targets: [
        new LambdaFunction(recycler.fn, {
          retryAttempts: 2,
          maxEventAge: Duration.minutes(recyclerSchedule.rateMinutes),
        }),
      ],
    });
    recycler.fn.configureAsyncInvoke({ retryAttempts: 0 });

    // Stream → publisher → EventBridge. Only inserted event items reach the function (filtered by Lambda).
    stateful.bus.grantPutEventsTo(publisher.role);
    stateful.forwardQueue.grantSendMessages(publisher.role);
    // A record whose event fails its schema is set aside there at once (it would fail every retry).
    stateful.publisherFailures.grantSendMessages(publisher.role);
    publisher.fn.addEventSource(
      new DynamoEventSource(stateful.table, {
        startingPosition: StartingPosition.TRIM_HORIZON,
        batchSize: publisherStream.batchSize,
        maxBatchingWindow: Duration.seconds(1),
        parallelizationFactor: 1,
        // Bounded: a batch that keeps failing is split to isolate the bad record, then handed to the
        // on-failure queue after these retries, and the shard goes on.
        bisectBatchOnError: true,
        retryAttempts: PUBLISHER_RETRY_ATTEMPTS,
        maxRecordAge: Duration.hours(24),
        reportBatchItemFailures: true,
        onFailure: new SqsDlq(stateful.publisherFailures),
        filters: [
          FilterCriteria.filter({
            eventName: FilterRule.isEqual("INSERT"),
            dynamodb: { NewImage: { kind: { S: FilterRule.isEqual("event") } } },
          }),
        ],
      }),
    );

    // CDK's grants on the customer-managed data key (table, queue) use the KMS wildcard actions; they are
    // scoped to that one key. DynamoDB grants include the table's indexes (/index/*), needed for Query on gsi1.
    const tableLogicalId = stateful.getLogicalId(stateful.table.node.defaultChild as CfnTable);
    for (const fn of Object.values(this.functions)) {
      NagSuppressions.addResourceSuppressions(
        fn.role,
        [
          {
            id: "AwsSolutions-IAM5",
            reason:
              "KMS data-key actions (kms:GenerateDataKey*, kms:ReEncrypt*) granted by CDK for SSE-KMS on the " +
              "table and the forward queue, resource-scoped to the single Maskline data key ARN.",
            appliesTo: ["Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"],
          },
          {
            id: "AwsSolutions-IAM5",
            reason:
              "Data access to the Maskline table includes its global secondary indexes (gsi1 is the recycler's " +
              "sparse index of open sessions); the wildcard is the index name under this one table.",
            appliesTo: [
              // The table ARN as cdk-nag prints it: `<Table….Arn>` on first synthesis, the resolved weak
              // cross-stack reference (Fn::GetStackOutput) when the tree is synthesized again (tests).
              {
                regex: `/^Resource::(<${tableLogicalId}\\.Arn>|\\{"Fn::GetStackOutput":\\{.*"OutputName":"PublishOutputFnGetAtt${tableLogicalId}Arn[0-9A-F]+"\\}\\})\\/index\\/\\*$/`,
              },
            ],
          },
        ],
        true,
      );
    }

    this.httpApi.addRoutes(routes, {
      allocate: allocate.fn,
      inbound: inbound.fn,
      forward: forward.fn,
      recycler: recycler.fn,
      publisher: publisher.fn,
    });

    this.eventsDelivery = settings.eventsWebhook
      ? new EventsDelivery(this, "EventsDelivery", {
          bus: stateful.bus,
          source: eventBus.source,
          url: settings.eventsWebhook.url,
          secretArn: settings.eventsWebhook.secretArn,
          headerName: settings.eventsWebhook.headerName,
          name: names.eventsDeliveryName,
          removalPolicy,
          // Every event of the target load (about 4 per forwarded message) with headroom.
          rateLimitPerSecond: Math.max(10, settings.capacity.targetMessagesPerSecond * 8),
        })
      : undefined;

    this.monitoring = new MasklineMonitoring(this, "Monitoring", {
      dashboardName: names.dashboardName,
      eventsDelivery: this.eventsDelivery,
      functions: this.functions,
      forwardQueue: stateful.forwardQueue,
      forwardDeadLetterQueue: stateful.forwardDeadLetterQueue,
      publisherFailures: stateful.publisherFailures,
      busDeadLetters: stateful.busDeadLetters,
      api: this.httpApi.api,
      topicKey: stateful.key,
      poolUtilizationAlarmPercent: settings.poolUtilizationAlarmPercent,
      alarmEmail: settings.alarmEmail,
    });

    new CfnOutput(this, "ApiUrl", { value: publicBaseUrl, description: "Maskline API base URL" });
    for (const route of routes.filter((r) => r.auth === "twilio")) {
      const name = route.path.split("/").pop() ?? "";
      new CfnOutput(this, `TwilioWebhook${name[0]?.toUpperCase()}${name.slice(1)}Url`, {
        value: `${publicBaseUrl}${route.path}`,
        description: `Twilio webhook: ${route.method} ${route.path}`,
      });
    }
    new CfnOutput(this, "EventBusName", { value: stateful.bus.eventBusName });
    new CfnOutput(this, "EventBusArn", { value: stateful.bus.eventBusArn });
    new CfnOutput(this, "AlarmTopicArn", { value: this.monitoring.topic.topicArn });
  }
}

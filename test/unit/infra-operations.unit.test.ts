/**
 * Template tests for running Maskline for real: capacity, events to a backend outside AWS, stages,
 * observability and a publisher that never wedges. Bundling is skipped (infra.unit.test.ts checks the
 * bundles); each test checks one behaviour of the synthesized templates.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { App, type CfnResource, type Stack } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import {
  EVENTS_DELIVERY_MAX_AGE,
  EVENTS_DELIVERY_RETRY_ATTEMPTS,
} from "../../infra/constructs/events-delivery.ts";
import { buildMaskline } from "../../infra/maskline.ts";
import { capacityFor, stageNames, TWILIO_REQUESTS_PER_MESSAGE } from "../../infra/settings.ts";
import { PUBLISHER_RETRY_ATTEMPTS } from "../../infra/stacks/app-stack.ts";
import { count, metrics, publishPoolHealth } from "../../shared/adapters/observability.ts";
import { routes } from "../../shared/resources.ts";
import { METRICS_NAMESPACE, metricNames } from "../../shared/telemetry.ts";

type Json = Record<string, unknown>;
const cdkJson = JSON.parse(readFileSync(new URL("../../cdk.json", import.meta.url), "utf8")) as {
  context: Json;
};
const WEBHOOK_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:maskline-events-key-AbCdEf";

/** Two stages side by side in one app: production (unstaged) and "staging", with events delivery on. */
const cdkApp = new App({
  context: {
    ...cdkJson.context,
    "aws:cdk:bundling-stacks": [],
    "maskline:eventsWebhookUrl": "https://project.supabase.co/functions/v1/maskline-events",
    "maskline:eventsWebhookSecretArn": WEBHOOK_SECRET,
  },
});
const prod = buildMaskline(cdkApp);
const staging = buildMaskline(cdkApp, undefined, { stage: "staging" });
const prodStateful = Template.fromStack(prod.stateful);
const prodApp = Template.fromStack(prod.app);
const stagingStateful = Template.fromStack(staging.stateful);
const stagingApp = Template.fromStack(staging.app);

const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnResource);
const refersTo = (value: unknown, text: string) => JSON.stringify(value).includes(text);

describe("capacity", () => {
  test("Twilio routes and product routes have separate throttles, sized from the target", () => {
    const capacity = capacityFor({ targetMessagesPerSecond: 20, productRequestsPerSecond: 25 });
    // 20 msg/s x 3 Twilio requests (+ 2 callbacks per product request) x headroom 2.
    assert.equal(capacity.twilio.rateLimit, (20 * TWILIO_REQUESTS_PER_MESSAGE + 2 * 25) * 2);
    const [stage] = Object.values(prodApp.findResources("AWS::ApiGatewayV2::Stage"));
    const settings = stage?.Properties.RouteSettings as Record<string, Json>;
    for (const route of routes) {
      const expected = route.auth === "twilio" ? capacity.twilio : capacity.product;
      assert.deepEqual(
        settings[`${route.method} ${route.path}`],
        { ThrottlingRateLimit: expected.rateLimit, ThrottlingBurstLimit: expected.burstLimit },
        `${route.method} ${route.path} in ${Object.keys(settings).join(", ")}`,
      );
    }
    assert.ok(capacity.twilio.rateLimit > capacity.product.rateLimit);
  });

  test("the stage is created after the routes its settings name", () => {
    const [[stageId, stage]] = Object.entries(prodApp.findResources("AWS::ApiGatewayV2::Stage")) as [
      [string, Json],
    ];
    const routeIds = Object.keys(prodApp.findResources("AWS::ApiGatewayV2::Route"));
    assert.ok(stageId);
    for (const id of routeIds) assert.ok((stage.DependsOn as string[]).includes(id), `stage waits for ${id}`);
  });

  test("a larger target raises the throttles and the forward concurrency", () => {
    const small = capacityFor({ targetMessagesPerSecond: 5, productRequestsPerSecond: 5 });
    const large = capacityFor({ targetMessagesPerSecond: 100, productRequestsPerSecond: 50 });
    assert.ok(large.twilio.rateLimit > small.twilio.rateLimit);
    assert.ok(large.forwardMaxConcurrency > small.forwardMaxConcurrency);
    assert.ok(small.forwardMaxConcurrency >= 2, "Lambda's lower bound for maxConcurrency");
  });

  test("the forward event source has a maximum concurrency", () => {
    prodApp.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      FunctionName: { Ref: logicalId(prod.app, prod.app.functions.forward.fn) },
      ScalingConfig: { MaximumConcurrency: prod.settings.capacity.forwardMaxConcurrency },
    });
  });
});

describe("domain events to a backend outside AWS", () => {
  test("an archive keeps every maskline event for SESSION_RETENTION_DAYS (90 by default)", () => {
    prodStateful.hasResourceProperties("AWS::Events::Archive", {
      ArchiveName: "maskline-events",
      EventPattern: { source: ["maskline"] },
      RetentionDays: 90,
    });
  });

  test("the bus and its archive are encrypted with the data key: events carry participants' numbers", () => {
    const keyArn = { "Fn::GetAtt": [logicalId(prod.stateful, prod.stateful.key), "Arn"] };
    prodStateful.hasResourceProperties("AWS::Events::EventBus", { KmsKeyIdentifier: keyArn });
    prodStateful.hasResourceProperties("AWS::Events::Archive", { KmsKeyIdentifier: keyArn });
    // EventBridge itself encrypts and decrypts (PutEvents callers and rule targets need no key access),
    // only for this bus: the key policy binds the service to the bus's encryption context.
    const [key] = Object.values(prodStateful.findResources("AWS::KMS::Key"));
    assert.ok(key, "the data key");
    const forEvents = (key.Properties.KeyPolicy.Statement as Json[]).filter(
      (s) => JSON.stringify(s.Principal) === JSON.stringify({ Service: "events.amazonaws.com" }),
    );
    assert.ok(forEvents.some((s) => refersTo(s.Action, "kms:GenerateDataKey")));
    for (const s of forEvents.filter((s) => refersTo(s.Action, "kms:Decrypt")))
      assert.ok(refersTo(s.Condition, "kms:EncryptionContext:aws:events:event-bus:arn"), JSON.stringify(s));
  });

  test("an event the bus cannot encrypt or decrypt goes to a dead-letter queue of the bus, which alarms", () => {
    const dlqId = logicalId(prod.stateful, prod.stateful.busDeadLetters);
    prodStateful.hasResourceProperties("AWS::Events::EventBus", {
      DeadLetterConfig: { Arn: { "Fn::GetAtt": [dlqId, "Arn"] } },
    });
    const [policy] = Object.values(prodStateful.findResources("AWS::SQS::QueuePolicy")).filter((p) =>
      refersTo(p.Properties.Queues, dlqId),
    );
    assert.ok(policy, "the bus dead-letter queue's policy");
    const sends = (policy.Properties.PolicyDocument.Statement as Json[]).filter(
      (s) => s.Effect === "Allow" && refersTo(s.Principal, "events.amazonaws.com"),
    );
    assert.equal(sends.length, 1);
    assert.deepEqual(sends[0]?.Action, "sqs:SendMessage");
    assert.ok(refersTo(sends[0]?.Condition, "aws:SourceArn"), "only this bus may send");
    const alarms = Object.values(prodApp.findResources("AWS::CloudWatch::Alarm")).filter(
      (a) =>
        a.Properties.MetricName === "ApproximateNumberOfMessagesVisible" &&
        refersTo(a.Properties.Dimensions, dlqId.replace(/[0-9A-F]{8}$/, "")),
    );
    assert.equal(alarms.length, 1);
  });

  test("the archive's retention follows maskline:sessionRetentionDays", () => {
    const app = new App({
      context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [], "maskline:sessionRetentionDays": 30 },
    });
    const built = buildMaskline(app, undefined, { stage: "short" });
    Template.fromStack(built.stateful).hasResourceProperties("AWS::Events::Archive", { RetentionDays: 30 });
  });

  test("an API destination with a connection whose key comes from the secret, not the template", () => {
    prodApp.hasResourceProperties("AWS::Events::ApiDestination", {
      InvocationEndpoint: "https://project.supabase.co/functions/v1/maskline-events",
      HttpMethod: "POST",
    });
    const [connection] = Object.values(prodApp.findResources("AWS::Events::Connection"));
    const auth = connection?.Properties.AuthParameters.ApiKeyAuthParameters;
    assert.equal(auth.ApiKeyName, "Authorization");
    assert.match(JSON.stringify(auth.ApiKeyValue), /resolve:secretsmanager:.*maskline-events-key.*apiKey/);
  });

  test("a rule sends every maskline event there, with retries and a dead-letter queue", () => {
    const dlqId = logicalId(prod.app, prod.app.eventsDelivery?.deadLetterQueue as never);
    prodApp.hasResourceProperties("AWS::Events::Rule", {
      EventPattern: { source: ["maskline"] },
      Targets: [
        Match.objectLike({
          RetryPolicy: {
            MaximumRetryAttempts: EVENTS_DELIVERY_RETRY_ATTEMPTS,
            MaximumEventAgeInSeconds: EVENTS_DELIVERY_MAX_AGE.toSeconds(),
          },
          DeadLetterConfig: { Arn: { "Fn::GetAtt": [dlqId, "Arn"] } },
        }),
      ],
    });
  });

  test("without maskline:eventsWebhookUrl nothing is delivered (the feature is optional)", () => {
    const app = new App({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [] } });
    const built = buildMaskline(app);
    Template.fromStack(built.app).resourceCountIs("AWS::Events::ApiDestination", 0);
    Template.fromStack(built.app).resourceCountIs("AWS::Events::Connection", 0);
  });

  test("its dead-letter queue has an alarm", () => {
    prodApp.hasResourceProperties("AWS::CloudWatch::Alarm", {
      MetricName: "ApproximateNumberOfMessagesVisible",
      Dimensions: [{ Name: "QueueName", Value: Match.objectLike({ "Fn::GetAtt": Match.anyValue() }) }],
      AlarmDescription: Match.stringLikeRegexp("product backend"),
    });
  });

  test("an event EventBridge could not even put in that dead-letter queue (lost) alarms at once", () => {
    // Metrics of a rule on a custom bus carry both EventBusName and RuleName: RuleName alone never matches.
    const ruleId = logicalId(prod.app, prod.app.eventsDelivery?.rule as never);
    const [alarm, ...others] = Object.values(prodApp.findResources("AWS::CloudWatch::Alarm")).filter(
      (a) => a.Properties.MetricName === "InvocationsFailedToBeSentToDlq",
    );
    assert.ok(alarm, "an alarm on InvocationsFailedToBeSentToDlq");
    assert.equal(others.length, 0);
    assert.equal(alarm.Properties.Namespace, "AWS/Events");
    assert.equal(alarm.Properties.Threshold, 1);
    const dimensions = alarm.Properties.Dimensions as { Name: string; Value: unknown }[];
    assert.deepEqual(dimensions.map((d) => d.Name).sort(), ["EventBusName", "RuleName"]);
    assert.deepEqual(dimensions.find((d) => d.Name === "RuleName")?.Value, { Ref: ruleId });
    assert.ok(refersTo(dimensions.find((d) => d.Name === "EventBusName")?.Value, "EventBus"));
  });
});

/** Every name a template sets explicitly (the ones that must be unique in an account and region). */
function physicalNames(templates: Template[]): string[] {
  const nameProps = [
    "Name",
    "AliasName",
    "DashboardName",
    "ArchiveName",
    "ApiDestinationName",
    "TableName",
    "QueueName",
    "FunctionName",
    "LogGroupName",
    "AlarmName",
    "TopicName",
  ];
  const names: string[] = [];
  for (const template of templates) {
    for (const resource of Object.values(template.toJSON().Resources as Record<string, Json>)) {
      const props = (resource.Properties ?? {}) as Json;
      for (const key of nameProps) {
        const value = props[key];
        if (typeof value === "string" && resource.Type !== "AWS::IAM::Policy") names.push(value);
      }
    }
  }
  return names;
}

describe("stages", () => {
  test("without a stage every name is the original one", () => {
    assert.equal(prod.stateful.stackName, "MasklineStateful");
    assert.equal(prod.app.stackName, "MasklineApp");
    prodStateful.hasResourceProperties("AWS::KMS::Alias", { AliasName: "alias/maskline-data" });
    prodStateful.hasResourceProperties("AWS::Events::EventBus", { Name: "maskline" });
    prodApp.hasResourceProperties("AWS::CloudWatch::Dashboard", { DashboardName: "Maskline" });
    prodApp.hasResourceProperties("AWS::ApiGatewayV2::Api", { Name: "maskline" });
  });

  test("-c stage=NAME names every stack and named resource after the stage", () => {
    const names = stageNames("staging");
    assert.equal(staging.stateful.stackName, "MasklineStateful-staging");
    assert.equal(staging.app.stackName, "MasklineApp-staging");
    stagingStateful.hasResourceProperties("AWS::KMS::Alias", { AliasName: names.keyAlias });
    stagingStateful.hasResourceProperties("AWS::Events::EventBus", { Name: "maskline-staging" });
    stagingApp.hasResourceProperties("AWS::CloudWatch::Dashboard", { DashboardName: "Maskline-staging" });
    stagingApp.hasResourceProperties("AWS::ApiGatewayV2::Api", { Name: "maskline-staging" });
    for (const name of physicalNames([stagingStateful, stagingApp])) assert.match(name, /staging/);
  });

  test("two stages side by side in one account: no stack or resource name collides", () => {
    const stacks = [prod.stateful, prod.app, staging.stateful, staging.app].map((s) => s.stackName);
    assert.equal(new Set(stacks).size, stacks.length);
    const prodNames = physicalNames([prodStateful, prodApp]);
    const stagingNames = physicalNames([stagingStateful, stagingApp]);
    assert.ok(prodNames.length >= 6, `named resources found: ${prodNames.join(", ")}`);
    assert.deepEqual(
      prodNames.filter((n) => stagingNames.includes(n)),
      [],
    );
  });

  test("each stage's functions publish to their own stage's bus", () => {
    const busOf = (built: typeof prod, template: Template) =>
      template.toJSON().Resources[logicalId(built.app, built.app.functions.publisher.fn)].Properties
        .Environment.Variables.EVENT_BUS_NAME;
    assert.ok(refersTo(busOf(prod, prodApp), "EventBus"));
    assert.notDeepEqual(busOf(prod, prodApp), busOf(staging, stagingApp));
  });

  test("production keeps its data: RETAIN, deletion and termination protection", () => {
    assert.equal(prod.stateful.terminationProtection, true);
    prodStateful.hasResourceProperties("AWS::DynamoDB::Table", { DeletionProtectionEnabled: true });
    for (const type of [
      "AWS::DynamoDB::Table",
      "AWS::KMS::Key",
      "AWS::SQS::Queue",
      "AWS::SecretsManager::Secret",
      // Product rules (and their targets) attach to the bus by name: deleting it would drop them.
      "AWS::Events::EventBus",
      "AWS::Events::Archive",
    ]) {
      assert.ok(Object.keys(prodStateful.findResources(type)).length > 0, `${type} in the stateful stack`);
      for (const r of Object.values(prodStateful.findResources(type)))
        assert.equal(r.DeletionPolicy, "Retain", `${type} retained in production`);
    }
  });

  test("-c stage=prod is production too", () => {
    const app = new App({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [], stage: "prod" } });
    const built = buildMaskline(app);
    assert.equal(built.settings.production, true);
    assert.equal(built.stateful.stackName, "MasklineStateful-prod");
    Template.fromStack(built.stateful).hasResourceProperties("AWS::DynamoDB::Table", {
      DeletionProtectionEnabled: true,
    });
  });

  test("any other stage can be destroyed: DESTROY, no deletion or termination protection", () => {
    assert.equal(staging.stateful.terminationProtection, false);
    stagingStateful.hasResourceProperties("AWS::DynamoDB::Table", { DeletionProtectionEnabled: false });
    for (const template of [stagingStateful, stagingApp]) {
      for (const [id, r] of Object.entries(template.toJSON().Resources as Record<string, Json>)) {
        assert.notEqual(r.DeletionPolicy, "Retain", `${id} (${r.Type}) would be orphaned`);
      }
    }
  });

  test("cdk-nag finds nothing in either stage", () => {
    for (const stack of [prod.stateful, prod.app, staging.stateful, staging.app]) {
      const rule = Match.stringLikeRegexp("AwsSolutions-.*");
      const found = [
        ...Annotations.fromStack(stack).findError("*", rule),
        ...Annotations.fromStack(stack).findWarning("*", rule),
      ];
      assert.deepEqual(
        found.map((e) => `${stack.stackName} ${e.id}: ${String(e.entry.data).slice(0, 100)}`),
        [],
      );
    }
  });
});

describe("observability", () => {
  const alarmOn = (metricName: string) =>
    Object.values(prodApp.findResources("AWS::CloudWatch::Alarm")).filter((a) =>
      JSON.stringify(a.Properties).includes(`"${metricName}"`),
    );

  test("every Maskline metric an alarm or the dashboard reads is published by the functions: same namespace, name and dimensions", () => {
    // What the functions actually write (Powertools EMF on stdout): each count, and the recycler's pool health.
    const lines: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((chunk: string) => {
      lines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    try {
      for (const name of Object.values(metricNames)) count(name);
      metrics.publishStoredMetrics();
      publishPoolHealth({ utilization: 0.5, headroom: 3, pairsPerNumber: 1.5 });
    } finally {
      process.stdout.write = write;
    }
    const published = new Set<string>();
    for (const line of lines.flatMap((l) => l.split("\n")).filter((l) => l.includes('"_aws"'))) {
      const emf = JSON.parse(line) as {
        _aws: {
          CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[];
        };
      } & Json;
      for (const directive of emf._aws.CloudWatchMetrics)
        for (const dimensions of directive.Dimensions)
          for (const metric of directive.Metrics)
            published.add(
              JSON.stringify([directive.Namespace, metric.Name, ...dimensions.flatMap((d) => [d, emf[d]])]),
            );
    }
    // What the alarms and the dashboard read: [namespace, name, dimension, value, …].
    const read: string[] = [];
    for (const alarm of Object.values(prodApp.findResources("AWS::CloudWatch::Alarm"))) {
      const p = alarm.Properties;
      const specs = p.Namespace
        ? [p]
        : ((p.Metrics ?? []) as Json[]).flatMap((m) =>
            m.MetricStat ? [(m.MetricStat as Json).Metric as Json] : [],
          );
      for (const spec of specs as Json[]) {
        const dims = ((spec.Dimensions ?? []) as { Name: string; Value: unknown }[]).flatMap((d) => [
          d.Name,
          d.Value,
        ]);
        if (spec.Namespace === METRICS_NAMESPACE)
          read.push(JSON.stringify([spec.Namespace, spec.MetricName, ...dims]));
      }
    }
    const [dashboard] = Object.values(prodApp.findResources("AWS::CloudWatch::Dashboard"));
    const body = JSON.stringify(dashboard?.Properties.DashboardBody).replaceAll('\\"', '"');
    for (const [, spec] of body.matchAll(/\[("Maskline",[^\]{]*)/g))
      read.push(`[${spec?.replace(/,$/, "")}]`);
    assert.ok(read.length >= 10, `alarms and widgets read Maskline metrics (${read.length})`);
    for (const metric of read) assert.ok(published.has(metric), `${metric} is read but never published`);
  });

  test("every log group (functions, API access logs) is encrypted with the data key, which CloudWatch Logs may use for this account's log groups only", () => {
    const groups = Object.entries(prodApp.findResources("AWS::Logs::LogGroup"));
    assert.ok(groups.length >= 6, "five function log groups and the access logs");
    const keyId = logicalId(prod.stateful, prod.stateful.key);
    for (const [id, group] of groups)
      assert.ok(
        refersTo(group.Properties.KmsKeyId, `PublishOutputFnGetAtt${keyId}Arn`),
        `${id} uses the data key`,
      );
    const [key] = Object.values(prodStateful.findResources("AWS::KMS::Key"));
    assert.ok(key, "the data key");
    const forLogs = (key.Properties.KeyPolicy.Statement as Json[]).filter(
      (s) => refersTo(s.Principal, ".amazonaws.com") && refersTo(s.Principal, "logs."),
    );
    assert.equal(forLogs.length, 1, "one key policy statement for CloudWatch Logs");
    assert.ok(refersTo(forLogs[0]?.Condition, "kms:EncryptionContext:aws:logs:arn"));
    assert.ok(refersTo(forLogs[0]?.Condition, ":log-group:*"));
  });

  test("failed-forward rate alarms on MessagesFailed over all sends", () => {
    const [alarm] = alarmOn(metricNames.messagesFailed);
    assert.ok(alarm, "an alarm uses MessagesFailed");
    const metrics = alarm.Properties.Metrics as Json[];
    assert.ok(metrics.some((m) => String(m.Expression ?? "").includes("failed / (failed + forwarded)")));
    assert.ok(JSON.stringify(metrics).includes(metricNames.messagesForwarded));
  });

  test("signature rejections alarm (a rotation gone wrong shows up here)", () => {
    const [alarm] = alarmOn(metricNames.signatureRejected);
    assert.ok(alarm);
    assert.equal(alarm.Properties.Namespace, "Maskline");
  });

  test("publisher failures alarm: failed PutEvents, records set aside, the on-failure queue", () => {
    assert.equal(alarmOn(metricNames.publishFailures).length, 1);
    assert.equal(alarmOn(metricNames.eventsSetAside).length, 1);
    const failuresQueue = logicalId(prod.stateful, prod.stateful.publisherFailures);
    const depth = Object.values(prodApp.findResources("AWS::CloudWatch::Alarm")).filter(
      (a) =>
        a.Properties.MetricName === "ApproximateNumberOfMessagesVisible" &&
        refersTo(a.Properties.Dimensions, failuresQueue.replace(/[0-9A-F]{8}$/, "")),
    );
    assert.equal(depth.length, 1);
  });

  test("the dashboard shows the message metrics and pool headroom", () => {
    const [dashboard] = Object.values(prodApp.findResources("AWS::CloudWatch::Dashboard"));
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);
    for (const name of [
      metricNames.messagesReceived,
      metricNames.messagesForwarded,
      metricNames.messagesFailed,
      metricNames.signatureRejected,
      metricNames.optOuts,
      metricNames.messagesRateLimited,
      metricNames.poolHeadroom,
    ])
      assert.ok(body.includes(name), `dashboard shows ${name}`);
  });

  test("functions that call Twilio or AWS get bounded SDK and Twilio timeouts", () => {
    const env = (name: keyof typeof prod.app.functions) =>
      prodApp.toJSON().Resources[logicalId(prod.app, prod.app.functions[name].fn)].Properties.Environment
        .Variables as Json;
    for (const name of ["allocate", "inbound", "forward", "recycler", "publisher"] as const) {
      const timeout = Number(env(name).AWS_CALL_TIMEOUT_MS);
      assert.ok(timeout > 0 && timeout < 10_000, `${name}: AWS_CALL_TIMEOUT_MS=${timeout}`);
    }
    assert.ok(Number(env("forward").TWILIO_TIMEOUT_MS) > 0);
  });

  test("the secret is re-read within a bounded age (rotation without redeploy)", () => {
    const env = (name: "inbound" | "forward") =>
      prodApp.toJSON().Resources[logicalId(prod.app, prod.app.functions[name].fn)].Properties.Environment
        .Variables as Json;
    for (const name of ["inbound", "forward"] as const) {
      const age = Number(env(name).TWILIO_SECRET_MAX_AGE_SECONDS);
      assert.ok(age > 0 && age <= 300, `${name}: TWILIO_SECRET_MAX_AGE_SECONDS=${age}`);
    }
  });
});

describe("a publisher that never wedges", () => {
  test("the stream source retries a bounded number of times, bisects, and hands failures to a queue", () => {
    const failuresQueue = logicalId(prod.stateful, prod.stateful.publisherFailures);
    const [mapping] = Object.values(
      prodApp.findResources("AWS::Lambda::EventSourceMapping", {
        Properties: { FunctionName: { Ref: logicalId(prod.app, prod.app.functions.publisher.fn) } },
      }),
    );
    const props = mapping?.Properties;
    assert.equal(props.MaximumRetryAttempts, PUBLISHER_RETRY_ATTEMPTS);
    assert.ok(PUBLISHER_RETRY_ATTEMPTS > 0 && PUBLISHER_RETRY_ATTEMPTS <= 20);
    assert.equal(props.BisectBatchOnFunctionError, true);
    assert.ok(props.MaximumRecordAgeInSeconds > 0);
    assert.ok(refersTo(props.DestinationConfig.OnFailure.Destination, failuresQueue.slice(0, 17)));
  });

  test("the publisher may set a poisoned record aside in the on-failure queue itself", () => {
    const publisherRole = logicalId(prod.app, prod.app.functions.publisher.role);
    const policies = Object.values(prodApp.findResources("AWS::IAM::Policy")).filter((p) =>
      refersTo(p.Properties.Roles, publisherRole),
    );
    const sends = policies
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Json[])
      .filter((s) => JSON.stringify(s.Action).includes("sqs:SendMessage"));
    assert.ok(sends.some((s) => refersTo(s.Resource, "PublisherFailures")));
    const env = prodApp.toJSON().Resources[logicalId(prod.app, prod.app.functions.publisher.fn)].Properties
      .Environment.Variables as Json;
    assert.ok(refersTo(env.PUBLISHER_FAILURES_QUEUE_URL, "PublisherFailures"));
  });
});

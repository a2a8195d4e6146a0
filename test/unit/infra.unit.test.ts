/**
 * Template tests for infra/: the app is synthesized once (with the real esbuild bundling and the context
 * of cdk.json), then each test checks one behaviour of the templates that `cdk deploy` would ship.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { App, type CfnResource, type Stack } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import { ESM_BANNER } from "../../infra/constructs/maskline-function.ts";
import { buildMaskline } from "../../infra/maskline.ts";
import { settingsFromContext } from "../../infra/settings.ts";
import { VISIBILITY_TIMEOUT_FACTOR } from "../../infra/stacks/app-stack.ts";
import { createTableInput } from "../../local/aws-local.ts";
import {
  eventBus,
  type FunctionName,
  forwardQueue,
  functions,
  mainTable,
  recyclerSchedule,
  routes,
} from "../../shared/resources.ts";

type Json = Record<string, unknown>;
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Json;
}

const cdkJson = JSON.parse(readFileSync(new URL("../../cdk.json", import.meta.url), "utf8")) as {
  context: Json;
};
const outdirs: string[] = [];
function synthesize(extraContext: Json = {}) {
  const outdir = mkdtempSync(join(tmpdir(), "maskline-cdk-"));
  outdirs.push(outdir);
  const app = new App({ outdir, context: { ...cdkJson.context, ...extraContext } });
  const built = buildMaskline(app);
  const assembly = app.synth();
  return { ...built, assembly, cdkApp: app };
}
after(() => {
  for (const dir of outdirs) rmSync(dir, { recursive: true, force: true });
});

// Once per file: the bundling of five functions is the slow part.
const built = synthesize();
const stateful = Template.fromStack(built.stateful);
const app = Template.fromStack(built.app);
const functionNames = Object.keys(functions) as FunctionName[];

const logicalId = (stack: Stack, construct: { node: { defaultChild?: unknown } }) =>
  stack.getLogicalId(construct.node.defaultChild as CfnResource);
const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resourcesOf = (s: Statement) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);

/** Every IAM statement attached to a function's role, by function. */
function statementsByFunction(template: Template, stack = built.app): Record<FunctionName, Statement[]> {
  const policies = template.findResources("AWS::IAM::Policy");
  const result = {} as Record<FunctionName, Statement[]>;
  for (const name of functionNames) {
    const roleId = logicalId(stack, built.app.functions[name].role);
    result[name] = Object.values(policies)
      .filter((p) => JSON.stringify(p.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
  }
  return result;
}
const statements = statementsByFunction(app);

/** How the app stack refers to a resource of the stateful stack (weak reference to a published output). */
function crossStackRef(template: Template, attribute: RegExp) {
  return JSON.stringify(template.toJSON()).match(attribute) !== null;
}
const refersTo = (value: unknown, logical: string) => JSON.stringify(value).includes(logical);

describe("cdk-nag (AwsSolutions)", () => {
  for (const [name, stack] of [
    ["MasklineStateful", built.stateful],
    ["MasklineApp", built.app],
  ] as const) {
    test(`${name}: no unsuppressed AwsSolutions errors or warnings`, () => {
      const rule = Match.stringLikeRegexp("AwsSolutions-.*");
      const errors = Annotations.fromStack(stack).findError("*", rule);
      const warnings = Annotations.fromStack(stack).findWarning("*", rule);
      assert.deepEqual(
        errors.map((e) => `${e.id}: ${String(e.entry.data).slice(0, 120)}`),
        [],
        "unsuppressed cdk-nag errors",
      );
      assert.deepEqual(
        warnings.map((w) => `${w.id}: ${String(w.entry.data).slice(0, 120)}`),
        [],
        "unsuppressed cdk-nag warnings",
      );
    });
  }

  test("every suppression carries a reason, and wildcard (IAM5) suppressions name what they apply to", () => {
    let count = 0;
    for (const template of [stateful, app]) {
      for (const resource of Object.values(template.toJSON().Resources as Record<string, Json>)) {
        const metadata = resource.Metadata as
          | { cdk_nag?: { rules_to_suppress?: { id: string; reason: string; applies_to?: unknown[] }[] } }
          | undefined;
        for (const rule of metadata?.cdk_nag?.rules_to_suppress ?? []) {
          count++;
          assert.ok(rule.reason.length >= 40, `${rule.id} needs a real reason: "${rule.reason}"`);
          if (rule.id === "AwsSolutions-IAM5") {
            assert.ok(rule.applies_to && rule.applies_to.length > 0, "IAM5 suppressions must use appliesTo");
          }
        }
      }
    }
    assert.ok(count > 0, "the suppressions are recorded in the templates");
  });
});

describe("one source of truth: shared/resources.ts", () => {
  test("the table's keys, indexes, stream and TTL are the ones the embedded stack provisions", () => {
    const local = createTableInput(mainTable, "any");
    const [table] = Object.values(stateful.findResources("AWS::DynamoDB::Table"));
    assert.ok(table, "one table");
    const props = table.Properties;
    const sortByName = (a: { AttributeName?: string }, b: { AttributeName?: string }) =>
      String(a.AttributeName).localeCompare(String(b.AttributeName));
    assert.deepEqual(props.KeySchema, local.KeySchema);
    assert.deepEqual(
      [...props.AttributeDefinitions].sort(sortByName),
      [...(local.AttributeDefinitions ?? [])].sort(sortByName),
    );
    assert.deepEqual(
      props.GlobalSecondaryIndexes.map((g: Json) => ({
        IndexName: g.IndexName,
        KeySchema: g.KeySchema,
        Projection: g.Projection,
      })),
      local.GlobalSecondaryIndexes,
    );
    assert.equal(props.StreamSpecification.StreamViewType, local.StreamSpecification?.StreamViewType);
    assert.equal(props.BillingMode, local.BillingMode);
    assert.deepEqual(props.TimeToLiveSpecification, {
      AttributeName: mainTable.timeToLiveAttribute,
      Enabled: true,
    });
    assert.equal(built.stateful.table.node.id, mainTable.id);
  });

  test("the queues are forwardQueue: FIFO, dedup, visibility, retention, redrive count", () => {
    const queueId = logicalId(built.stateful, built.stateful.forwardQueue);
    const dlqId = logicalId(built.stateful, built.stateful.forwardDeadLetterQueue);
    const queue = stateful.toJSON().Resources[queueId].Properties;
    const dlq = stateful.toJSON().Resources[dlqId].Properties;
    assert.equal(queue.FifoQueue, forwardQueue.fifo);
    assert.equal(queue.ContentBasedDeduplication, forwardQueue.contentBasedDeduplication);
    assert.equal(queue.VisibilityTimeout, forwardQueue.visibilityTimeoutSeconds);
    assert.equal(queue.MessageRetentionPeriod, forwardQueue.retentionSeconds);
    assert.equal(queue.RedrivePolicy.maxReceiveCount, forwardQueue.deadLetter.maxReceiveCount);
    assert.equal(dlq.MessageRetentionPeriod, forwardQueue.deadLetter.retentionSeconds);
    assert.equal(built.stateful.forwardQueue.node.id, forwardQueue.id);
    assert.equal(built.stateful.forwardDeadLetterQueue.node.id, forwardQueue.deadLetter.id);
  });

  test("each function has the timeout and memory of its definition", () => {
    for (const name of functionNames) {
      const id = logicalId(built.app, built.app.functions[name].fn);
      const props = app.toJSON().Resources[id].Properties;
      assert.equal(props.Timeout, functions[name].timeoutSeconds, `${name} timeout`);
      assert.equal(props.MemorySize, functions[name].memoryMb, `${name} memory`);
    }
  });

  test("every route of the table of routes exists, and no other", () => {
    const keys = Object.values(app.findResources("AWS::ApiGatewayV2::Route"))
      .map((r) => r.Properties.RouteKey as string)
      .sort();
    assert.deepEqual(keys, routes.map((r) => `${r.method} ${r.path}`).sort());
  });
});

describe("HTTP API", () => {
  test("product routes require IAM (SigV4) authorization", () => {
    const product = routes.filter((r) => r.auth === "product");
    assert.ok(product.length >= 8);
    for (const route of product) {
      app.hasResourceProperties("AWS::ApiGatewayV2::Route", {
        RouteKey: `${route.method} ${route.path}`,
        AuthorizationType: "AWS_IAM",
      });
    }
  });

  test("Twilio webhooks and /health are open (signature checked in the function)", () => {
    for (const route of routes.filter((r) => r.auth !== "product")) {
      app.hasResourceProperties("AWS::ApiGatewayV2::Route", {
        RouteKey: `${route.method} ${route.path}`,
        AuthorizationType: "NONE",
      });
    }
  });

  test("the default stage throttles and writes JSON access logs", () => {
    app.hasResourceProperties("AWS::ApiGatewayV2::Stage", {
      StageName: "$default",
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: Match.anyValue(), ThrottlingBurstLimit: Match.anyValue() },
      AccessLogSettings: {
        DestinationArn: Match.anyValue(),
        Format: Match.stringLikeRegexp("\\$context\\.requestId"),
      },
    });
    app.hasResourceProperties("AWS::Logs::LogGroup", { RetentionInDays: Match.anyValue() });
  });

  test("routes invoke Lambda through payload format 2.0", () => {
    app.resourceCountIs("AWS::ApiGatewayV2::Integration", new Set(routes.map((r) => r.function)).size);
    app.allResourcesProperties("AWS::ApiGatewayV2::Integration", {
      IntegrationType: "AWS_PROXY",
      PayloadFormatVersion: "2.0",
    });
  });
});

/** A function's synthesized asset: the directory CDK zips, with index.mjs and what sits beside it. */
const assetOf = (name: FunctionName) => {
  const id = logicalId(built.app, built.app.functions[name].fn);
  const key = app.toJSON().Resources[id].Properties.Code.S3Key as string;
  return join(built.assembly.directory, `asset.${key.replace(/\.zip$/, "")}`);
};

/** A function's environment variables in the template. */
const environmentOf = (name: FunctionName) =>
  app.toJSON().Resources[logicalId(built.app, built.app.functions[name].fn)].Properties.Environment
    .Variables as Json;

/** Dummy configuration under which every bundle starts outside AWS. */
const BUNDLE_ENV = {
  PATH: process.env.PATH ?? "",
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "test",
  AWS_SECRET_ACCESS_KEY: "test",
  TABLE_NAME: "t",
  FORWARD_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
  PUBLIC_BASE_URL: "https://example.test",
  TWILIO_ACCOUNT_SID: "AC00000000000000000000000000000000",
  TWILIO_AUTH_TOKEN: "test-auth-token",
  MASKLINE_AUTH: "iam",
  EVENT_BUS_NAME: "maskline",
  PUBLISHER_FAILURES_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/failures",
};

describe("functions", () => {
  test("all five are nodejs22.x on arm64, ESM (index.mjs), traced, with their own log group", () => {
    app.resourceCountIs("AWS::Lambda::Function", functionNames.length);
    app.allResourcesProperties("AWS::Lambda::Function", {
      Runtime: "nodejs22.x",
      Architectures: ["arm64"],
      Handler: "index.handler",
      TracingConfig: { Mode: "Active" },
      LoggingConfig: { LogGroup: { Ref: Match.anyValue() } },
      Environment: {
        Variables: Match.objectLike({
          POWERTOOLS_SERVICE_NAME: "maskline",
          POWERTOOLS_METRICS_NAMESPACE: "Maskline",
          LOG_LEVEL: Match.anyValue(),
        }),
      },
    });
    // One log group per function (with retention) plus the API access logs.
    const groups = Object.values(app.findResources("AWS::Logs::LogGroup"));
    assert.equal(groups.length, functionNames.length + 1);
    for (const group of groups) assert.ok(group.Properties.RetentionInDays > 0);
  });

  test("no managed policies: each role starts empty and gets only its grants", () => {
    for (const role of Object.values(app.findResources("AWS::IAM::Role"))) {
      assert.equal(role.Properties.ManagedPolicyArns, undefined);
    }
  });

  test("no function runs with --enable-source-maps: Node would scan each bundle and its map at every cold start", () => {
    for (const name of functionNames) assert.equal(environmentOf(name).NODE_OPTIONS, undefined, name);
  });

  test("every bundle is minified ESM with a source map and loads under node (require shim works)", async () => {
    const run = promisify(execFile);
    await Promise.all(
      functionNames.map(async (name) => {
        const dir = assetOf(name);
        const code = readFileSync(join(dir, "index.mjs"), "utf8");
        assert.ok(code.startsWith(ESM_BANNER), `${name}: the require/__dirname banner comes first`);
        assert.match(code, /\/\/# sourceMappingURL=index\.mjs\.map\s*$/);
        assert.ok(readFileSync(join(dir, "index.mjs.map")).length > 0);
        const { stdout } = await run(
          process.execPath,
          [
            "--no-warnings",
            "--input-type=module",
            "-e",
            `const m = await import(${JSON.stringify(join(dir, "index.mjs"))}); console.log(typeof m.handler);`,
          ],
          { env: BUNDLE_ENV, cwd: tmpdir(), timeout: 30_000 },
        );
        assert.equal(stdout.trim(), "function", `${name} bundle exports handler`);
        // The tracer is not in the bundle: it loads on demand from node_modules next to it (Node's resolution).
        const tracer = await run(
          process.execPath,
          [
            "--no-warnings",
            "--input-type=module",
            "-e",
            'const { Tracer } = await import("@aws-lambda-powertools/tracer"); console.log(typeof Tracer);',
          ],
          { env: BUNDLE_ENV, cwd: dir, timeout: 30_000 },
        );
        assert.equal(tracer.stdout.trim(), "function", `${name}: the on-demand tracer loads from its asset`);
      }),
    );
  });

  test("configuration comes from env and Secrets Manager, never credentials in env", () => {
    const apiId = logicalId(built.app, built.app.httpApi.api);
    for (const name of functionNames) {
      assert.equal(environmentOf(name).TWILIO_AUTH_TOKEN, undefined);
      assert.equal(environmentOf(name).TWILIO_ACCOUNT_SID, undefined);
    }
    for (const name of ["inbound", "forward", "recycler"] as const) {
      assert.deepEqual(environmentOf(name).PUBLIC_BASE_URL, { "Fn::GetAtt": [apiId, "ApiEndpoint"] });
      assert.ok(refersTo(environmentOf(name).TWILIO_SECRET_ARN, "TwilioSecret"));
    }
    assert.equal(environmentOf("allocate").MASKLINE_AUTH, "iam");
    for (const name of ["allocate", "inbound", "forward", "publisher"] as const) {
      assert.ok(refersTo(environmentOf(name).FORWARD_QUEUE_URL, "ForwardQueue"), `${name} FORWARD_QUEUE_URL`);
    }
    assert.ok(refersTo(environmentOf("publisher").EVENT_BUS_NAME, "EventBus"));
    assert.ok(refersTo(environmentOf("allocate").TABLE_NAME, "Table"));
  });
});

describe("DynamoDB", () => {
  test("point-in-time recovery is on", () => {
    stateful.hasResourceProperties("AWS::DynamoDB::Table", {
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });

  test("TTL is on the ttl attribute", () => {
    stateful.hasResourceProperties("AWS::DynamoDB::Table", {
      TimeToLiveSpecification: { AttributeName: "ttl", Enabled: true },
    });
  });

  test("the stream carries new images", () => {
    stateful.hasResourceProperties("AWS::DynamoDB::Table", {
      StreamSpecification: { StreamViewType: "NEW_IMAGE" },
    });
  });

  test("on-demand, encrypted with the customer-managed key, deletion-protected", () => {
    const keyId = logicalId(built.stateful, built.stateful.key);
    stateful.hasResourceProperties("AWS::DynamoDB::Table", {
      BillingMode: "PAY_PER_REQUEST",
      DeletionProtectionEnabled: true,
      SSESpecification: {
        SSEEnabled: true,
        SSEType: "KMS",
        KMSMasterKeyId: { "Fn::GetAtt": [keyId, "Arn"] },
      },
    });
  });
});

describe("KMS", () => {
  test("the data key is customer-managed with rotation on and is retained", () => {
    stateful.hasResourceProperties("AWS::KMS::Key", { EnableKeyRotation: true });
    stateful.hasResource("AWS::KMS::Key", { DeletionPolicy: "Retain", UpdateReplacePolicy: "Retain" });
  });
});

describe("SQS", () => {
  test("forward queue and its DLQ are both FIFO, redrive after maxReceiveCount >= 5", () => {
    const dlqId = logicalId(built.stateful, built.stateful.forwardDeadLetterQueue);
    stateful.hasResourceProperties("AWS::SQS::Queue", {
      FifoQueue: true,
      RedrivePolicy: {
        deadLetterTargetArn: { "Fn::GetAtt": [dlqId, "Arn"] },
        maxReceiveCount: forwardQueue.deadLetter.maxReceiveCount,
      },
    });
    assert.ok(forwardQueue.deadLetter.maxReceiveCount >= 5);
    const dlq = stateful.toJSON().Resources[dlqId].Properties;
    assert.equal(dlq.FifoQueue, true);
  });

  test("visibility timeout is at least 6x the forward function's timeout", () => {
    const queueId = logicalId(built.stateful, built.stateful.forwardQueue);
    const fnId = logicalId(built.app, built.app.functions.forward.fn);
    const visibility = stateful.toJSON().Resources[queueId].Properties.VisibilityTimeout as number;
    const timeout = app.toJSON().Resources[fnId].Properties.Timeout as number;
    assert.equal(VISIBILITY_TIMEOUT_FACTOR, 6);
    assert.ok(visibility >= 6 * timeout, `visibility ${visibility}s < 6 x ${timeout}s`);
  });

  test("every queue is KMS-encrypted with the data key and denies non-TLS access", () => {
    const keyId = logicalId(built.stateful, built.stateful.key);
    // The bus's dead-letter queue is SSE-SQS: EventBridge must reach it when the data key is what failed.
    const busDlq = logicalId(built.stateful, built.stateful.busDeadLetters);
    const queues = stateful.findResources("AWS::SQS::Queue");
    assert.equal(Object.keys(queues).length, 4);
    for (const [id, queue] of Object.entries(queues)) {
      if (id === busDlq) assert.equal(queue.Properties.SqsManagedSseEnabled, true);
      else assert.deepEqual(queue.Properties.KmsMasterKeyId, { "Fn::GetAtt": [keyId, "Arn"] });
    }
    const policies = Object.values(stateful.findResources("AWS::SQS::QueuePolicy"));
    assert.equal(policies.length, 4);
    for (const policy of policies) {
      assert.ok(
        (policy.Properties.PolicyDocument.Statement as Statement[]).some(
          (s) =>
            s.Effect === "Deny" && JSON.stringify(s.Condition) === '{"Bool":{"aws:SecureTransport":"false"}}',
        ),
      );
    }
  });

  test("the forward function consumes the queue with partial batch failures", () => {
    app.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      FunctionName: { Ref: logicalId(built.app, built.app.functions.forward.fn) },
      EventSourceArn: Match.anyValue(),
      FunctionResponseTypes: ["ReportBatchItemFailures"],
    });
    assert.ok(crossStackRef(app, /ForwardQueue[0-9A-F]{8}Arn/));
  });
});

describe("EventBridge", () => {
  test("a rate schedule targets the recycler", () => {
    app.hasResourceProperties("AWS::Events::Rule", {
      ScheduleExpression: `rate(${recyclerSchedule.rateMinutes} minute${recyclerSchedule.rateMinutes === 1 ? "" : "s"})`,
      State: "ENABLED",
      Targets: [
        Match.objectLike({
          Arn: { "Fn::GetAtt": [logicalId(built.app, built.app.functions.recycler.fn), "Arn"] },
        }),
      ],
    });
  });

  test("the custom bus is named maskline and only the publisher may put events on it", () => {
    stateful.hasResourceProperties("AWS::Events::EventBus", { Name: eventBus.name });
    for (const name of functionNames) {
      const puts = statements[name].filter((s) => actionsOf(s).includes("events:PutEvents"));
      if (name === "publisher") {
        assert.equal(puts.length, 1);
        assert.ok(refersTo(puts[0]?.Resource, "EventBus"));
      } else assert.equal(puts.length, 0, `${name} must not put events`);
    }
  });

  test("the table stream feeds the publisher: inserted events only, partial failures, on-failure queue", () => {
    app.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      FunctionName: { Ref: logicalId(built.app, built.app.functions.publisher.fn) },
      StartingPosition: "TRIM_HORIZON",
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      BisectBatchOnFunctionError: true,
      FilterCriteria: {
        Filters: [
          {
            Pattern: JSON.stringify({
              eventName: ["INSERT"],
              dynamodb: { NewImage: { kind: { S: ["event"] } } },
            }),
          },
        ],
      },
      DestinationConfig: { OnFailure: { Destination: Match.anyValue() } },
    });
  });
});

describe("least privilege", () => {
  test("no statement grants '*' actions or service wildcards (dynamodb:*, sqs:*, kms:*, ...)", () => {
    for (const name of functionNames) {
      for (const s of statements[name]) {
        for (const action of actionsOf(s)) {
          assert.notEqual(action, "*", `${name}: '*' action`);
          assert.doesNotMatch(action, /^[a-z0-9-]+:\*$/, `${name}: ${action}`);
        }
      }
    }
  });

  test("'*' resources only for actions without resource-level permissions (X-Ray, ListStreams)", () => {
    for (const name of functionNames) {
      for (const s of statements[name].filter((st) => resourcesOf(st).includes("*"))) {
        for (const action of actionsOf(s)) {
          assert.ok(
            ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "dynamodb:ListStreams"].includes(action),
            `${name}: ${action} on '*'`,
          );
        }
      }
    }
  });

  test("table access: read/write only where written; the publisher reads the stream, never the table", () => {
    const dynamo = (name: FunctionName) =>
      statements[name].flatMap(actionsOf).filter((a) => a.startsWith("dynamodb:"));
    // Exactly the item operations the adapters call (GetItem, BatchGetItem, Query; Put/Update/Delete alone and
    // inside TransactWriteItems, whose items are authorized one by one). No Scan (a read of every number in
    // the table), no BatchWriteItem (writes without conditions), no DescribeTable, no stream reads.
    for (const name of ["allocate", "inbound", "forward", "recycler"] as const) {
      assert.deepEqual(
        [...new Set(dynamo(name))].sort(),
        [
          "dynamodb:BatchGetItem",
          "dynamodb:ConditionCheckItem",
          "dynamodb:DeleteItem",
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:Query",
          "dynamodb:UpdateItem",
        ],
        name,
      );
    }
    assert.deepEqual([...new Set(dynamo("publisher"))].sort(), [
      "dynamodb:DescribeStream",
      "dynamodb:GetRecords",
      "dynamodb:GetShardIterator",
      "dynamodb:ListStreams",
    ]);
  });

  /** The secrets a function may read: every resource of its secretsmanager statements, one action only. */
  const secretsReadBy = (name: FunctionName) => {
    const secretStatements = statements[name].filter((s) =>
      actionsOf(s).some((a) => a.startsWith("secretsmanager:")),
    );
    for (const s of secretStatements) assert.deepEqual(s.Action, "secretsmanager:GetSecretValue");
    return secretStatements.flatMap((s) => resourcesOf(s));
  };

  test("Secrets Manager: GetSecretValue on the Twilio secret only, for the functions that talk to Twilio", () => {
    for (const name of functionNames) {
      const twilio = secretsReadBy(name).filter((r) => refersTo(r, "TwilioSecret"));
      // Without auto top-up (the default) the recycler never calls Twilio.
      if (name === "inbound" || name === "forward") {
        assert.equal(twilio.length, 1, `${name} reads the secret`);
        const decrypt = statements[name].find(
          (st) => st.Action === "kms:Decrypt" && JSON.stringify(st.Condition).includes("kms:ViaService"),
        );
        assert.ok(decrypt, `${name} decrypts the secret only via Secrets Manager`);
      } else {
        assert.equal(twilio.length, 0, `${name} must not read the Twilio secret`);
      }
      const others = secretsReadBy(name).filter(
        (r) => !refersTo(r, "TwilioSecret") && !refersTo(r, "PseudonymSecret"),
      );
      assert.deepEqual(others, [], `${name} reads no other secret`);
    }
  });

  test("the pseudonym key: a generated secret, read by allocate, inbound and forward only", () => {
    stateful.hasResourceProperties("AWS::SecretsManager::Secret", {
      Description: Match.stringLikeRegexp("pseudonyms"),
      GenerateSecretString: Match.objectLike({ PasswordLength: 64 }),
    });
    for (const name of functionNames) {
      const reads = secretsReadBy(name).filter((r) => refersTo(r, "PseudonymSecret"));
      const needs = name === "allocate" || name === "inbound" || name === "forward";
      assert.equal(reads.length, needs ? 1 : 0, `${name} reads the pseudonym key: ${needs}`);
      if (needs) assert.ok(refersTo(environmentOf(name).PSEUDONYM_SECRET_ARN, "PseudonymSecret"));
      else assert.equal(environmentOf(name).PSEUDONYM_SECRET_ARN, undefined);
    }
  });

  test("only the consumer can receive/delete from the forward queue; producers only send", () => {
    for (const name of functionNames) {
      const actions = statements[name].flatMap(actionsOf);
      assert.equal(actions.includes("sqs:ReceiveMessage"), name === "forward", `${name} ReceiveMessage`);
      assert.equal(actions.includes("sqs:DeleteMessage"), name === "forward", `${name} DeleteMessage`);
      assert.equal(
        actions.includes("sqs:SendMessage"),
        ["allocate", "inbound", "publisher"].includes(name),
        `${name} SendMessage`,
      );
    }
  });

  test("with auto top-up on, the recycler (and only then) may read the Twilio secret", () => {
    // Bundling skipped: this checks grants only.
    const topUp = synthesize({ "maskline:autoTopUp": true, "aws:cdk:bundling-stacks": [] });
    const topUpStatements = statementsByFunction(Template.fromStack(topUp.app), topUp.app);
    assert.ok(
      topUpStatements.recycler.some(
        (s) => s.Action === "secretsmanager:GetSecretValue" && refersTo(s.Resource, "TwilioSecret"),
      ),
    );
    const env = Template.fromStack(topUp.app).toJSON().Resources[
      logicalId(topUp.app, topUp.app.functions.recycler.fn)
    ].Properties.Environment.Variables;
    assert.equal(env.AUTO_TOP_UP, "true");
  });

  test("maskline:messaging reaches inbound and forward, which read it, and no other function", () => {
    const custom = synthesize({
      "maskline:messaging": { CONTENT_POLICY: "block-contacts", HELP_REPLY: "Help: reply STOP" },
      "aws:cdk:bundling-stacks": [],
    });
    const resources = Template.fromStack(custom.app).toJSON().Resources;
    for (const name of functionNames) {
      const env =
        resources[logicalId(custom.app, custom.app.functions[name].fn)].Properties.Environment.Variables;
      const reads = name === "inbound" || name === "forward";
      assert.equal(env.CONTENT_POLICY, reads ? "block-contacts" : undefined, name);
      assert.equal(env.HELP_REPLY, reads ? "Help: reply STOP" : undefined, name);
    }
  });

  test("maskline:sessionRetentionDays reaches the archive and every function that writes the table", () => {
    // Bundling skipped: this checks the templates only.
    const custom = synthesize({ "maskline:sessionRetentionDays": 30, "aws:cdk:bundling-stacks": [] });
    Template.fromStack(custom.stateful).hasResourceProperties("AWS::Events::Archive", { RetentionDays: 30 });
    const resources = Template.fromStack(custom.app).toJSON().Resources;
    const writers = functionNames.filter((name) => environmentOf(name).TABLE_NAME !== undefined);
    assert.deepEqual(writers.sort(), ["allocate", "forward", "inbound", "recycler"]);
    for (const name of writers)
      assert.equal(
        resources[logicalId(custom.app, custom.app.functions[name].fn)].Properties.Environment.Variables
          .SESSION_RETENTION_DAYS,
        "30",
        name,
      );
  });
});

describe("stateful / stateless split", () => {
  test("data lives in MasklineStateful, retained, behind termination protection", () => {
    assert.equal(built.stateful.terminationProtection, true);
    for (const type of [
      "AWS::DynamoDB::Table",
      "AWS::KMS::Key",
      "AWS::SQS::Queue",
      "AWS::SecretsManager::Secret",
    ]) {
      const found = Object.values(stateful.findResources(type));
      assert.ok(found.length > 0, `${type} in the stateful stack`);
      for (const r of found) assert.equal(r.DeletionPolicy, "Retain", `${type} retained`);
      app.resourceCountIs(type, 0);
    }
  });

  test("functions, API and alarms live in MasklineApp", () => {
    stateful.resourceCountIs("AWS::Lambda::Function", 0);
    stateful.resourceCountIs("AWS::ApiGatewayV2::Api", 0);
    app.resourceCountIs("AWS::ApiGatewayV2::Api", 1);
    assert.ok(built.app.dependencies.includes(built.stateful), "app depends on stateful, never the reverse");
    assert.ok(!built.stateful.dependencies.includes(built.app));
  });

  test("the Twilio secret is a placeholder until put-secret-value, never the credentials", () => {
    stateful.hasResourceProperties("AWS::SecretsManager::Secret", {
      GenerateSecretString: {
        GenerateStringKey: "authToken",
        SecretStringTemplate: '{"accountSid":"REPLACE_ME"}',
      },
      KmsKeyId: Match.anyValue(),
    });
    stateful.hasResource("AWS::SecretsManager::Secret", { DeletionPolicy: "Retain" });
  });
});

describe("monitoring", () => {
  const alarms = Object.values(app.findResources("AWS::CloudWatch::Alarm"));
  const alarmFor = (predicate: (props: Json) => boolean) => alarms.filter((a) => predicate(a.Properties));

  test("DLQ not empty alarms on the forward DLQ", () => {
    const dlqAlarms = alarmFor(
      (p) => p.MetricName === "ApproximateNumberOfMessagesVisible" && refersTo(p.Dimensions, "ForwardDlq"),
    );
    assert.equal(dlqAlarms.length, 1);
    assert.equal(dlqAlarms[0]?.Properties.Threshold, 1);
    assert.equal(dlqAlarms[0]?.Properties.ComparisonOperator, "GreaterThanOrEqualToThreshold");
  });

  test("errors and throttles alarm for every function", () => {
    for (const name of functionNames) {
      const fnId = logicalId(built.app, built.app.functions[name].fn);
      for (const metric of ["Errors", "Throttles"]) {
        app.hasResourceProperties("AWS::CloudWatch::Alarm", {
          Namespace: "AWS/Lambda",
          MetricName: metric,
          Dimensions: [{ Name: "FunctionName", Value: { Ref: fnId } }],
        });
      }
    }
  });

  test("pool utilization high alarms on the recycler's metric", () => {
    app.hasResourceProperties("AWS::CloudWatch::Alarm", {
      Namespace: "Maskline",
      MetricName: "PoolUtilization",
      Dimensions: [{ Name: "service", Value: "maskline" }],
      Threshold: 80,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
    });
  });

  test("every alarm notifies the encrypted alarm topic; a dashboard exists", () => {
    const topicId = logicalId(built.app, built.app.monitoring.topic);
    for (const alarm of alarms) {
      assert.deepEqual(alarm.Properties.AlarmActions, [{ Ref: topicId }]);
    }
    app.hasResourceProperties("AWS::SNS::Topic", { KmsMasterKeyId: Match.anyValue() });
    app.hasResourceProperties("AWS::SNS::TopicPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          // In the order CDK writes them: the TLS-only deny, then the CloudWatch allow.
          Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
          Match.objectLike({
            Effect: "Allow",
            Action: "sns:Publish",
            Principal: { Service: "cloudwatch.amazonaws.com" },
          }),
        ]),
      },
    });
    app.resourceCountIs("AWS::CloudWatch::Dashboard", 1);
  });
});

describe("outputs", () => {
  test("API URL, the three Twilio webhook URLs and the bus name", () => {
    const apiId = logicalId(built.app, built.app.httpApi.api);
    const endpoint = { "Fn::GetAtt": [apiId, "ApiEndpoint"] };
    app.hasOutput("ApiUrl", { Value: endpoint });
    for (const [output, path] of [
      ["TwilioWebhookSmsUrl", "/twilio/sms"],
      ["TwilioWebhookVoiceUrl", "/twilio/voice"],
      ["TwilioWebhookStatusUrl", "/twilio/status"],
    ]) {
      app.hasOutput(output as string, { Value: { "Fn::Join": ["", [endpoint, path]] } });
    }
    app.hasOutput("EventBusName", { Value: Match.anyValue() });
    stateful.hasOutput("TwilioSecretArn", { Value: Match.anyValue() });
  });
});

describe("settings", () => {
  test("maskline:messaging: the texts and traffic rules of inbound and forward, validated by variable name", () => {
    const messaging = (value: unknown) =>
      settingsFromContext(new App({ context: { "maskline:messaging": value } }).node).messaging;
    assert.deepEqual(
      messaging({ CONTENT_POLICY: "redact-contacts", OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: 3600 }),
      {
        CONTENT_POLICY: "redact-contacts",
        OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: "3600",
      },
    );
    // `cdk deploy -c maskline:messaging='{…}'` passes a string.
    assert.deepEqual(messaging('{"HELP_REPLY":"Help: reply STOP to opt out"}'), {
      HELP_REPLY: "Help: reply STOP to opt out",
    });
    assert.throws(() => messaging({ CONTENT_POLICY: "strict" }), /maskline:messaging[\s\S]*CONTENT_POLICY/);
    assert.throws(() => messaging({ SENDER_RATE_LIMIT: "fast" }), /SENDER_RATE_LIMIT/);
    assert.throws(
      () => messaging({ PUBLIC_BASE_URL: "https://x.test" }),
      /maskline:messaging[\s\S]*PUBLIC_BASE_URL/,
    );
    assert.throws(() => messaging("{"), /maskline:messaging/);
    assert.throws(() => messaging(["CONTENT_POLICY"]), /maskline:messaging/);
    assert.deepEqual(settingsFromContext(new App().node).messaging, {});
  });

  test("bad context values stop synth with a message naming the key", () => {
    const withContext = (context: Json) => settingsFromContext(new App({ context }).node);
    assert.throws(() => withContext({ "maskline:logRetentionDays": 8 }), /maskline:logRetentionDays/);
    assert.throws(() => withContext({ "maskline:logLevel": "LOUD" }), /maskline:logLevel/);
    assert.throws(
      () => withContext({ "maskline:targetMessagesPerSecond": -1 }),
      /maskline:targetMessagesPerSecond/,
    );
    assert.throws(() => withContext({ stage: "Prod_1" }), /stage/);
    assert.throws(() => withContext({ "maskline:eventsWebhookUrl": "https://x.test/e" }), /SecretArn/);
    assert.throws(() => withContext({ "maskline:sessionRetentionDays": 0 }), /SESSION_RETENTION_DAYS/);
    assert.throws(() => withContext({ "maskline:publicBaseUrl": "http://x.test/path" }), /publicBaseUrl/);
    assert.equal(
      withContext({ "maskline:publicBaseUrl": "https://sms.example.com/" }).publicBaseUrl,
      "https://sms.example.com",
    );
    // A custom domain whose API mapping has a path: API Gateway leaves it out of rawPath, the base URL has it.
    assert.equal(
      withContext({ "maskline:publicBaseUrl": "https://api.example.com/maskline/" }).publicBaseUrl,
      "https://api.example.com/maskline",
    );
    for (const bad of [
      "https://api.example.com/a?b=1",
      "https://api.example.com/a#b",
      "https://a.test/b%20c",
    ])
      assert.throws(() => withContext({ "maskline:publicBaseUrl": bad }), /publicBaseUrl/, bad);
    assert.equal(withContext({}).logRetention, 30);
  });
});

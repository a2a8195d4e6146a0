import { ArnFormat, CfnOutput, Duration, Stack, type StackProps } from "aws-cdk-lib";
import type { Table } from "aws-cdk-lib/aws-dynamodb";
import { Archive, type CfnArchive, EventBus } from "aws-cdk-lib/aws-events";
import { PolicyStatement, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Key } from "aws-cdk-lib/aws-kms";
import { Secret } from "aws-cdk-lib/aws-secretsmanager";
import { Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { NagSuppressions } from "cdk-nag";
import type { Construct } from "constructs";
import { eventBus, forwardQueue, mainTable, publisherStream } from "../../shared/resources.ts";
import { fifoQueueFromDefinition, lifecycleFor, tableFromDefinition } from "../constructs/data.ts";
import type { StageNames } from "../settings.ts";

export interface StatefulStackProps extends StackProps {
  names: StageNames;
  /** RETAIN and protection (production) or DESTROY (a throw-away stage). */
  production: boolean;
  /** The EventBridge archive keeps events this many days (SESSION_RETENTION_DAYS). */
  sessionRetentionDays: number;
}

/**
 * Everything that holds data or identity: the KMS key, the table (events and projections), the queues, the
 * Twilio secret, the domain-event bus that product rules attach to and its archive. In production all are
 * retained on delete and the stack is termination-protected, so redeploying or even destroying the app
 * stack cannot lose data; a non-production stage can be destroyed whole.
 */
export class StatefulStack extends Stack {
  readonly key: Key;
  readonly table: Table;
  readonly forwardQueue: Queue;
  readonly forwardDeadLetterQueue: Queue;
  /** Where the stream → publisher mapping sends records it gave up on (pointers to replay from the table). */
  readonly publisherFailures: Queue;
  readonly twilioSecret: Secret;
  /** The key of the pseudonyms (keyed hashes of strangers' and erased people's numbers). */
  readonly pseudonymSecret: Secret;
  readonly bus: EventBus;
  /** Events the bus could not encrypt or decrypt with the data key (a key policy gone wrong). */
  readonly busDeadLetters: Queue;
  /** Every domain event on the bus, kept SESSION_RETENTION_DAYS for replay. */
  readonly archive: Archive;
  readonly production: boolean;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    const { names, production, sessionRetentionDays, ...stackProps } = props;
    super(scope, id, { terminationProtection: production, ...stackProps });
    this.production = production;
    const lifecycle = lifecycleFor(production);

    this.key = new Key(this, "DataKey", {
      description: "Maskline data: table, queues, event bus and archive, secrets, log groups, alarm topic",
      alias: names.keyAlias,
      enableKeyRotation: true,
      removalPolicy: lifecycle.removalPolicy,
      ...(production ? {} : { pendingWindow: Duration.days(7) }),
    });
    // CloudWatch alarms publish to the alarm topic, which is encrypted with this key.
    this.key.addToResourcePolicy(
      new PolicyStatement({
        sid: "AllowCloudWatchAlarmsToUseTheAlarmTopic",
        principals: [new ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": this.account } },
      }),
    );

    // The functions' and the API's log groups (in the app stack) are encrypted with this key too: CloudWatch
    // Logs may use it for this account's log groups in this region only.
    const logGroups = this.formatArn({
      service: "logs",
      resource: "log-group",
      resourceName: "*",
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    this.key.addToResourcePolicy(
      new PolicyStatement({
        sid: "AllowCloudWatchLogsForMasklineLogGroups",
        principals: [new ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
        actions: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources: ["*"],
        conditions: { ArnLike: { "kms:EncryptionContext:aws:logs:arn": logGroups } },
      }),
    );

    this.table = tableFromDefinition(this, mainTable, this.key, lifecycle);

    const queues = fifoQueueFromDefinition(this, forwardQueue, this.key, lifecycle);
    this.forwardQueue = queues.queue;
    this.forwardDeadLetterQueue = queues.deadLetterQueue;

    this.publisherFailures = new Queue(this, publisherStream.failuresQueueId, {
      encryption: QueueEncryption.KMS,
      encryptionMasterKey: this.key,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: lifecycle.removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.publisherFailures, [
      {
        id: "AwsSolutions-SQS3",
        reason:
          "This queue is itself the on-failure destination of the DynamoDB stream → publisher mapping; it " +
          "holds pointers to stream records whose events stay in the table and are replayed from there.",
      },
    ]);

    this.twilioSecret = new Secret(this, "TwilioSecret", {
      description:
        'Twilio credentials for Maskline, JSON {"accountSid","authToken"}. Set after the first deploy: see docs/deploy.md.',
      encryptionKey: this.key,
      // A placeholder until the operator puts the real value; never the real credentials in code or env.
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ accountSid: "REPLACE_ME" }),
        generateStringKey: "authToken",
        excludePunctuation: true,
      },
      removalPolicy: lifecycle.removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.twilioSecret, [
      {
        id: "AwsSolutions-SMG4",
        reason:
          "A Twilio auth token cannot be rotated by a Lambda rotator without the account's primary token; it " +
          "is rotated in the Twilio console and put here with put-secret-value (docs/deploy.md).",
      },
    ]);

    // Generated once and never rotated: pseudonyms made under another key would no longer match, and an
    // erased person's opt-out would be lost. Retained with the table it belongs to.
    this.pseudonymSecret = new Secret(this, "PseudonymSecret", {
      description:
        "Key of Maskline's pseudonyms (HMAC of phone numbers). Never change it: docs/architecture.md.",
      encryptionKey: this.key,
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: lifecycle.removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.pseudonymSecret, [
      {
        id: "AwsSolutions-SMG4",
        reason:
          "An HMAC key whose hashes are stored: rotating it would unlink every pseudonym already stored " +
          "(an erased person's opt-out among them). It never leaves Secrets Manager and the functions.",
      },
    ]);

    // Events carry participants' numbers: the bus and its archive are encrypted with the data key like the
    // table and queues. CDK adds the key policy that lets EventBridge (only for this bus's encryption
    // context) use it; PutEvents callers and rule targets need no key access. Retained in production:
    // product rules attach to the bus by name.
    // AWS advises a dead-letter queue on a bus encrypted with a customer-managed key: an event the bus cannot
    // encrypt or decrypt (the key disabled, its policy broken) goes there instead of being dropped. SSE-SQS:
    // EventBridge writes to it without needing the very key that failed.
    this.busDeadLetters = new Queue(this, "BusDeadLetters", {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: lifecycle.removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.busDeadLetters, [
      {
        id: "AwsSolutions-SQS3",
        reason:
          "This queue is itself the dead-letter queue of the event bus; the events it would hold are in the " +
          "table and are put on the bus again from there (docs/deploy.md).",
      },
    ]);
    this.bus = new EventBus(this, eventBus.id, {
      eventBusName: names.busName,
      kmsKey: this.key,
      deadLetterQueue: this.busDeadLetters,
    });
    this.bus.applyRemovalPolicy(lifecycle.removalPolicy);
    this.busDeadLetters.addToResourcePolicy(
      new PolicyStatement({
        sid: "AllowTheMasklineBus",
        principals: [new ServicePrincipal("events.amazonaws.com")],
        actions: ["sqs:SendMessage"],
        resources: [this.busDeadLetters.queueArn],
        conditions: { ArnEquals: { "aws:SourceArn": this.bus.eventBusArn } },
      }),
    );
    // Every event Maskline puts on the bus, for replay (docs/deploy.md, "Replaying events"). Capped at the
    // session retention: an erased or expired person's data must not outlive it in the archive. Scoped to
    // the bus (as `bus.archive()` would, which takes no key) so the archive keeps its logical id. The key
    // policy CDK adds for the archive names the bus by its ARN, built from the name: a reference would make
    // key and bus depend on each other. The archive itself keeps its reference to the bus.
    const busByArn = EventBus.fromEventBusArn(
      this,
      "BusByArn",
      this.formatArn({ service: "events", resource: "event-bus", resourceName: names.busName }),
    );
    this.archive = new Archive(this.bus, "Archive", {
      sourceEventBus: busByArn,
      archiveName: names.archiveName,
      description: `Every Maskline domain event, kept ${sessionRetentionDays} days (SESSION_RETENTION_DAYS)`,
      eventPattern: { source: [eventBus.source] },
      retention: Duration.days(sessionRetentionDays),
      kmsKey: this.key,
    });
    (this.archive.node.defaultChild as CfnArchive).sourceArn = this.bus.eventBusArn;
    this.archive.applyRemovalPolicy(lifecycle.removalPolicy);

    new CfnOutput(this, "TwilioSecretArn", {
      value: this.twilioSecret.secretArn,
      description: "Put the Twilio credentials here (aws secretsmanager put-secret-value)",
    });
    new CfnOutput(this, "TableName", { value: this.table.tableName });
    new CfnOutput(this, "ForwardDeadLetterQueueUrl", { value: this.forwardDeadLetterQueue.queueUrl });
    new CfnOutput(this, "PublisherFailuresQueueUrl", { value: this.publisherFailures.queueUrl });
    new CfnOutput(this, "BusDeadLetterQueueUrl", { value: this.busDeadLetters.queueUrl });
    new CfnOutput(this, "EventArchiveArn", { value: this.archive.archiveArn });
  }
}

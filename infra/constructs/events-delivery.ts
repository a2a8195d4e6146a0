import { Duration, type RemovalPolicy, SecretValue } from "aws-cdk-lib";
import {
  ApiDestination,
  Authorization,
  Connection,
  HttpMethod,
  type IEventBus,
  Rule,
} from "aws-cdk-lib/aws-events";
import { ApiDestination as ApiDestinationTarget } from "aws-cdk-lib/aws-events-targets";
import { Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { NagSuppressions } from "cdk-nag";
import { Construct } from "constructs";

export interface EventsDeliveryProps {
  bus: IEventBus;
  source: string;
  /** The HTTPS endpoint (e.g. a Supabase edge function) that receives each event as a POST. */
  url: string;
  /** Secrets Manager secret whose JSON field `apiKey` is sent in `headerName`. */
  secretArn: string;
  headerName: string;
  /** Prefix of the connection and destination names (stage-specific). */
  name: string;
  removalPolicy: RemovalPolicy;
  /** Most invocations per second EventBridge makes to the endpoint. */
  rateLimitPerSecond: number;
}

/** How long EventBridge keeps retrying one event before it goes to the dead-letter queue. */
export const EVENTS_DELIVERY_MAX_AGE = Duration.hours(24);
/** EventBridge's maximum retry count for a target. */
export const EVENTS_DELIVERY_RETRY_ATTEMPTS = 185;

/**
 * Delivers every domain event on the bus to an HTTPS endpoint outside AWS: an EventBridge connection (the
 * header's value read from Secrets Manager by EventBridge, never in the template), an API destination, and
 * a rule whose target retries with back-off for up to 24 hours, then puts the event in a dead-letter queue.
 * The body is the EventBridge event: `detail-type` is the event type and `detail` the versioned domain
 * event with its `id` for deduplication (docs/events/).
 */
export class EventsDelivery extends Construct {
  readonly connection: Connection;
  readonly destination: ApiDestination;
  readonly rule: Rule;
  readonly deadLetterQueue: Queue;
  /** The bus the rule is on (its metrics are reported under the bus's name and the rule's). */
  readonly bus: IEventBus;

  constructor(scope: Construct, id: string, props: EventsDeliveryProps) {
    super(scope, id);
    this.bus = props.bus;
    this.connection = new Connection(this, "Connection", {
      connectionName: `${props.name}-connection`,
      description: "Maskline domain events to the product backend",
      authorization: Authorization.apiKey(
        props.headerName,
        SecretValue.secretsManager(props.secretArn, { jsonField: "apiKey" }),
      ),
    });
    this.destination = new ApiDestination(this, "Destination", {
      apiDestinationName: `${props.name}-destination`,
      description: "HTTPS endpoint that receives every Maskline domain event",
      connection: this.connection,
      endpoint: props.url,
      httpMethod: HttpMethod.POST,
      rateLimitPerSecond: props.rateLimitPerSecond,
    });
    // EventBridge writes to the DLQ itself; SSE-SQS keeps it encrypted without a key policy on the data
    // key (which lives in the stateful stack and must not depend on this one).
    this.deadLetterQueue = new Queue(this, "DeadLetters", {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      removalPolicy: props.removalPolicy,
    });
    NagSuppressions.addResourceSuppressions(this.deadLetterQueue, [
      {
        id: "AwsSolutions-SQS3",
        reason:
          "This queue is itself the dead-letter queue of the API destination target; its events are also in " +
          "the EventBridge archive and the table, and are replayed from there (docs/deploy.md).",
      },
    ]);
    this.rule = new Rule(this, "Rule", {
      description: "Every Maskline domain event to the product backend's HTTPS endpoint",
      eventBus: props.bus,
      eventPattern: { source: [props.source] },
      targets: [
        new ApiDestinationTarget(this.destination, {
          retryAttempts: EVENTS_DELIVERY_RETRY_ATTEMPTS,
          maxEventAge: EVENTS_DELIVERY_MAX_AGE,
          deadLetterQueue: this.deadLetterQueue,
        }),
      ],
    });
  }
}

import { Duration, Stack } from "aws-cdk-lib";
import type { IHttpApi } from "aws-cdk-lib/aws-apigatewayv2";
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  TextWidget,
  TreatMissingData,
} from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { PolicyStatement, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import type { IKey } from "aws-cdk-lib/aws-kms";
import { Topic } from "aws-cdk-lib/aws-sns";
import { EmailSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { FunctionName } from "../../shared/resources.ts";
import { METRICS_NAMESPACE, type MetricName, metricNames, SERVICE_NAME } from "../../shared/telemetry.ts";
import type { EventsDelivery } from "./events-delivery.ts";
import type { MasklineFunction } from "./maskline-function.ts";

/** The recycler's pool-health metric (Powertools EMF: namespace Maskline, default dimension service). */
export const poolUtilizationMetric = {
  namespace: METRICS_NAMESPACE,
  metricName: metricNames.poolUtilization,
  dimensionsMap: { service: SERVICE_NAME },
} as const;

/** One of Maskline's own metrics (shared/telemetry.ts), summed or maxed over `period`. */
export function masklineMetric(metricName: MetricName, period: Duration, statistic = "Sum"): Metric {
  return new Metric({
    namespace: METRICS_NAMESPACE,
    metricName,
    dimensionsMap: { service: SERVICE_NAME },
    period,
    statistic,
  });
}

/** Failed-forward rate that pages: at least this percent of sends failed over 15 minutes… */
export const FAILED_FORWARD_RATE_PERCENT = 10;
/** …and at least this many failures (a single failure of two messages is not an incident). */
export const FAILED_FORWARD_MIN_COUNT = 5;

export interface MonitoringProps {
  functions: Record<FunctionName, MasklineFunction>;
  forwardQueue: IQueue;
  forwardDeadLetterQueue: IQueue;
  publisherFailures: IQueue;
  /** The event bus's dead-letter queue (events it could not encrypt or decrypt). */
  busDeadLetters: IQueue;
  api: IHttpApi;
  /** Encrypts the alarm topic; its policy lets CloudWatch use it. */
  topicKey: IKey;
  poolUtilizationAlarmPercent: number;
  alarmEmail: string | undefined;
  dashboardName: string;
  /** When domain events are delivered to an HTTPS endpoint: its dead-letter queue alarms too. */
  eventsDelivery: EventsDelivery | undefined;
}

/**
 * Alarms that page someone (to one SNS topic) and a one-screen dashboard: dead letters, function errors
 * and throttles, forward backlog, API 5xx, and pool utilization.
 */
export class MasklineMonitoring extends Construct {
  readonly topic: Topic;
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.topic = new Topic(this, "AlarmTopic", {
      displayName: "Maskline alarms",
      masterKey: props.topicKey,
      enforceSSL: true,
    });
    // enforceSSL gives the topic its own policy, which replaces SNS's default one: allow CloudWatch alarms
    // of this account to publish explicitly.
    this.topic.addToResourcePolicy(
      new PolicyStatement({
        sid: "AllowCloudWatchAlarms",
        principals: [new ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.topic.topicArn],
        conditions: { StringEquals: { "aws:SourceAccount": Stack.of(this).account } },
      }),
    );
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));

    const oneMinute = Duration.minutes(1);
    const fiveMinutes = Duration.minutes(5);
    const alarm = (
      id: string,
      metric: IMetric,
      threshold: number,
      description: string,
      evaluationPeriods = 1,
    ) => {
      const created = new Alarm(this, id, {
        metric,
        threshold,
        evaluationPeriods,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
      created.addAlarmAction(new SnsAction(this.topic));
      created.addOkAction(new SnsAction(this.topic));
      this.alarms.push(created);
      return created;
    };

    const dlqDepth = props.forwardDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
      period: oneMinute,
      statistic: "Maximum",
    });
    alarm(
      "ForwardDlqNotEmpty",
      dlqDepth,
      1,
      "A message could not be forwarded after every retry and is in the forward DLQ: inspect and redrive (docs/deploy.md).",
    );
    const publisherFailures = props.publisherFailures.metricApproximateNumberOfMessagesVisible({
      period: oneMinute,
      statistic: "Maximum",
    });
    alarm(
      "PublisherFailuresNotEmpty",
      publisherFailures,
      1,
      "Domain events could not be published to EventBridge; the queue holds stream pointers to replay from the table.",
    );
    alarm(
      "BusDlqNotEmpty",
      props.busDeadLetters.metricApproximateNumberOfMessagesVisible({
        period: oneMinute,
        statistic: "Maximum",
      }),
      1,
      "The event bus could not encrypt or decrypt a domain event with the data key (key disabled or its policy changed): fix the key, then put the events on the bus again from the table (docs/deploy.md).",
    );
    const backlogAge = props.forwardQueue.metricApproximateAgeOfOldestMessage({
      period: oneMinute,
      statistic: "Maximum",
    });
    alarm(
      "ForwardBacklogOld",
      backlogAge,
      120,
      "The oldest message waiting to be forwarded is over 2 minutes old.",
      3,
    );
    const serverErrors = props.api.metricServerError({ period: fiveMinutes, statistic: "Sum" });
    alarm("Api5xx", serverErrors, 5, "The HTTP API answered 5xx at least 5 times in 5 minutes.");

    const poolUtilization = new Metric({
      ...poolUtilizationMetric,
      dimensionsMap: { ...poolUtilizationMetric.dimensionsMap },
      period: fiveMinutes,
      statistic: "Maximum",
    });
    alarm(
      "PoolUtilizationHigh",
      poolUtilization,
      props.poolUtilizationAlarmPercent,
      `Number pool utilization is at or above ${props.poolUtilizationAlarmPercent}%: add numbers (POST /numbers) or enable top-up.`,
    );

    // Twilio refusing our sends: rate of MessageFailed over sends, both from the domain events.
    const fifteen = Duration.minutes(15);
    const forwarded = masklineMetric(metricNames.messagesForwarded, fifteen);
    const failed = masklineMetric(metricNames.messagesFailed, fifteen);
    const failedRate = new MathExpression({
      expression: `IF(failed >= ${FAILED_FORWARD_MIN_COUNT}, 100 * failed / (failed + forwarded), 0)`,
      usingMetrics: { failed, forwarded },
      period: fifteen,
      label: "Failed forwards (%)",
    });
    alarm(
      "FailedForwardRateHigh",
      failedRate,
      FAILED_FORWARD_RATE_PERCENT,
      `At least ${FAILED_FORWARD_RATE_PERCENT}% of forwarded messages failed at Twilio in 15 minutes (and at least ${FAILED_FORWARD_MIN_COUNT}): see MessagesFailed by twilioErrorCode.`,
    );
    const signatureRejected = masklineMetric(metricNames.signatureRejected, fiveMinutes);
    alarm(
      "SignatureRejections",
      signatureRejected,
      5,
      "Twilio webhooks are being refused (403, X-Twilio-Signature): a token rotation gone wrong, a wrong PUBLIC_BASE_URL, or forged traffic. See docs/deploy.md, rotating the token.",
    );
    const publishFailures = masklineMetric(metricNames.publishFailures, fiveMinutes);
    alarm(
      "PublisherFailing",
      publishFailures,
      1,
      "The publisher could not put domain events on the bus after its retries; Lambda retries the batch, then sets it aside in PublisherFailures.",
    );
    const setAside = masklineMetric(metricNames.eventsSetAside, fiveMinutes);
    alarm(
      "EventsSetAside",
      setAside,
      1,
      "An event item failed its schema and was set aside in PublisherFailures (the rest of the stream went on).",
    );
    if (props.eventsDelivery) {
      alarm(
        "EventsDeliveryDlqNotEmpty",
        props.eventsDelivery.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: oneMinute,
          statistic: "Maximum",
        }),
        1,
        "Domain events could not be delivered to the product backend's endpoint for 24 hours; redrive or replay (docs/deploy.md).",
      );
      // A rule on a custom bus reports its metrics under both EventBusName and RuleName.
      const { rule, bus } = props.eventsDelivery;
      alarm(
        "EventsDeliveryLost",
        new Metric({
          namespace: "AWS/Events",
          metricName: "InvocationsFailedToBeSentToDlq",
          dimensionsMap: { EventBusName: bus.eventBusName, RuleName: rule.ruleName },
          period: fiveMinutes,
          statistic: "Sum",
        }),
        1,
        "EventBridge could deliver a domain event neither to the product backend's endpoint nor to its dead-letter queue: it is lost there; replay it from the archive (docs/deploy.md).",
      );
    }

    const errorMetrics: IMetric[] = [];
    const throttleMetrics: IMetric[] = [];
    const durationMetrics: IMetric[] = [];
    for (const [name, fn] of Object.entries(props.functions)) {
      const errors = fn.fn.metricErrors({ period: fiveMinutes, statistic: "Sum" });
      const throttles = fn.fn.metricThrottles({ period: fiveMinutes, statistic: "Sum" });
      errorMetrics.push(errors.with({ label: name }));
      throttleMetrics.push(throttles.with({ label: name }));
      durationMetrics.push(fn.fn.metricDuration({ period: fiveMinutes, statistic: "p99", label: name }));
      const title = `${name[0]?.toUpperCase()}${name.slice(1)}`;
      alarm(`${title}Errors`, errors, 1, `The ${name} function failed (errors > 0 in 5 minutes).`);
      alarm(
        `${title}Throttles`,
        throttles,
        1,
        `The ${name} function was throttled (throttles > 0 in 5 minutes).`,
      );
    }

    const dashboard = new Dashboard(this, "Dashboard", { dashboardName: props.dashboardName });
    dashboard.addWidgets(
      new TextWidget({
        markdown: "# Maskline\nWebhooks, forwarding, pool. Alarms notify the Maskline alarms topic.",
        width: 24,
        height: 1,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "API requests and errors",
        left: [props.api.metricCount({ period: oneMinute, statistic: "Sum" })],
        right: [
          props.api.metricClientError({ period: oneMinute, statistic: "Sum" }),
          props.api.metricServerError({ period: oneMinute, statistic: "Sum" }),
        ],
        width: 8,
      }),
      new GraphWidget({ title: "Function errors", left: errorMetrics, width: 8 }),
      new GraphWidget({ title: "Function throttles", left: throttleMetrics, width: 8 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Forward queue",
        left: [
          props.forwardQueue.metricApproximateNumberOfMessagesVisible({ period: oneMinute }),
          dlqDepth,
          publisherFailures,
        ],
        right: [backlogAge],
        width: 8,
      }),
      new GraphWidget({
        title: "Pool utilization (%)",
        left: [poolUtilization],
        leftYAxis: { min: 0, max: 100 },
        width: 8,
      }),
      new GraphWidget({ title: "Function duration p99 (ms)", left: durationMetrics, width: 8 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: "Messages",
        left: [
          masklineMetric(metricNames.messagesReceived, oneMinute),
          masklineMetric(metricNames.messagesForwarded, oneMinute),
          masklineMetric(metricNames.messagesFailed, oneMinute),
          masklineMetric(metricNames.messagesBlocked, oneMinute),
        ],
        right: [failedRate],
        width: 8,
      }),
      new GraphWidget({
        title: "Refused and held back",
        left: [
          masklineMetric(metricNames.signatureRejected, oneMinute),
          masklineMetric(metricNames.messagesRateLimited, oneMinute),
          masklineMetric(metricNames.optOuts, oneMinute),
        ],
        width: 8,
      }),
      new GraphWidget({
        title: "Pool headroom and publishing",
        left: [masklineMetric(metricNames.poolHeadroom, fiveMinutes, "Minimum")],
        right: [publishFailures, setAside],
        width: 8,
      }),
    );
  }
}

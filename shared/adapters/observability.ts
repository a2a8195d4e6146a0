import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import type { Tracer } from "@aws-lambda-powertools/tracer";
import type { Context } from "aws-lambda";
import { METRICS_NAMESPACE, type MetricName, metricNames, SERVICE_NAME } from "../telemetry.ts";
import { logger } from "./logger.ts";

/**
 * Logs, metrics and traces for the functions.
 *
 * - Logger: Powertools, with the Lambda context and a `correlation_id` (MessageSid, Idempotency-Key or
 *   sessionId) on every line of an invocation (`observed`, `correlate`).
 * - Metrics: Powertools EMF in the `Maskline` namespace, flushed at the end of each invocation.
 * - Traces: X-Ray subsegments around DynamoDB, SQS, EventBridge, Secrets Manager and Twilio calls. The
 *   Powertools tracer (and the X-Ray SDK under it) is imported on the first traced call, and only in a
 *   Lambda with active tracing, so module init — the cold start — does not load it.
 */
export const metrics = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE_NAME });

export function count(name: MetricName, value = 1): void {
  metrics.addMetric(name, MetricUnit.Count, value);
}

/** A count with one extra dimension (Twilio error code, blocked reason), besides the plain count. */
export function countBy(name: MetricName, dimension: string, dimensionValue: string, value = 1): void {
  const single = metrics.singleMetric();
  single.addDimension(dimension, dimensionValue);
  single.addMetric(name, MetricUnit.Count, value);
}

/**
 * The recycler's pool health, published at once (a run may outlast the invocation's end): the metrics the
 * PoolUtilizationHigh alarm and the dashboard read.
 */
export function publishPoolHealth(health: { utilization: number; headroom: number; pairsPerNumber: number }) {
  metrics.addMetric(metricNames.poolUtilization, MetricUnit.Percent, Math.round(health.utilization * 100));
  metrics.addMetric(metricNames.poolHeadroom, MetricUnit.Count, health.headroom);
  metrics.addMetric(metricNames.pairsPerNumber, MetricUnit.Count, health.pairsPerNumber);
  metrics.publishStoredMetrics();
}

const tracingWanted = () =>
  process.env.POWERTOOLS_TRACE_ENABLED !== "false" &&
  Boolean(process.env.AWS_LAMBDA_FUNCTION_NAME) &&
  Boolean(process.env.AWS_XRAY_DAEMON_ADDRESS);

let tracer: Promise<Tracer | undefined> | undefined;

function loadTracer(): Promise<Tracer | undefined> {
  tracer ??= tracingWanted()
    ? import("@aws-lambda-powertools/tracer")
        .then(({ Tracer }) => new Tracer({ serviceName: SERVICE_NAME, captureHTTPsRequests: false }))
        .catch((error: unknown) => {
          logger.warn("tracer unavailable", { error: (error as Error)?.message });
          return undefined;
        })
    : Promise.resolve(undefined);
  return tracer;
}

/** Runs `fn` in an X-Ray subsegment named `name` when tracing is on; otherwise just runs it. */
export async function traced<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const active = await loadTracer();
  const parent = active?.getSegment();
  if (!active || !parent) return fn();
  const subsegment = parent.addNewSubsegment(name);
  active.setSegment(subsegment);
  try {
    return await fn();
  } catch (error) {
    subsegment.addError(error as Error);
    throw error;
  } finally {
    subsegment.close();
    active.setSegment(parent);
  }
}

/** An initialize-step middleware of the SDK, in the shape every v3 client accepts. */
type InitializeMiddleware = (
  next: (args: unknown) => Promise<unknown>,
  context: { commandName?: string },
) => (args: unknown) => Promise<unknown>;

/** Every command of this SDK client runs in a subsegment `<service>.<Command>`. */
export function traceClient<C extends { middlewareStack: { add: (...args: never[]) => void } }>(
  client: C,
  service: string,
): C {
  const middleware: InitializeMiddleware = (next, context) => (args) =>
    traced(`${service}.${(context.commandName ?? "call").replace(/Command$/, "")}`, () => next(args));
  // Each client's stack is typed with its own input/output unions; the middleware passes them through.
  const add = client.middlewareStack.add as unknown as (
    middleware: InitializeMiddleware,
    options: { step: "initialize"; name: string },
  ) => void;
  add.call(client.middlewareStack, middleware, { step: "initialize", name: "maskline-trace" });
  return client;
}

/** Sets the correlation id of the current log lines (a record of a batch, a webhook). */
export function correlate(id: string | undefined): void {
  if (id) logger.setCorrelationId(id);
}

/**
 * Wraps a handler: Lambda context and correlation id on every log line, metrics flushed at the end, and
 * the per-invocation keys cleared so nothing leaks into the next invocation.
 */
export function observed<E, R>(
  handler: (event: E, context: Context) => Promise<R>,
  options: { correlationId?: (event: E) => string | undefined; onResult?: (result: R) => void } = {},
): (event: E, context: Context) => Promise<R> {
  return async (event, context) => {
    logger.addContext(context);
    correlate(options.correlationId?.(event));
    try {
      const result = await handler(event, context);
      options.onResult?.(result);
      return result;
    } finally {
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
      logger.resetKeys();
    }
  };
}

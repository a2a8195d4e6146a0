import { type App, Aspects, type Environment } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { settingsFromContext } from "./settings.ts";
import { AppStack } from "./stacks/app-stack.ts";
import { StatefulStack } from "./stacks/stateful-stack.ts";

export const STATEFUL_STACK = "MasklineStateful";
export const APP_STACK = "MasklineApp";

/**
 * Builds both stacks into `app` and applies the cdk-nag AwsSolutions pack. `cdk synth` (infra/app.ts) and
 * the template tests share this function, so the tests check exactly what is deployed.
 */
export function buildMaskline(app: App, env?: Environment) {
  const settings = settingsFromContext(app.node);
  const stateful = new StatefulStack(app, STATEFUL_STACK, {
    env,
    description: "Maskline data: KMS key, DynamoDB table, SQS queues, Twilio secret, event bus (retained)",
  });
  const stateless = new AppStack(app, APP_STACK, {
    env,
    stateful,
    settings,
    description: "Maskline functions, HTTP API, schedule, alarms and dashboard (stateless)",
  });
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return { stateful, app: stateless, settings };
}

import { type App, Aspects, type Environment } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { type MasklineSettings, settingsFromContext, stageNames } from "./settings.ts";
import { AppStack } from "./stacks/app-stack.ts";
import { StatefulStack } from "./stacks/stateful-stack.ts";

/** The unstaged stack names (a deployed stack keeps its name: see `stageNames`). */
export const STATEFUL_STACK = stageNames(undefined).statefulStack;
export const APP_STACK = stageNames(undefined).appStack;

const nagged = new WeakSet<App>();

/**
 * Builds both stacks of one stage into `app` and applies the cdk-nag AwsSolutions pack. `cdk synth`
 * (infra/app.ts) and the template tests share this function, so the tests check exactly what is deployed.
 * `overrides` lets a test put two stages side by side in one app; `cdk` itself only uses context.
 */
export function buildMaskline(app: App, env?: Environment, overrides: Partial<MasklineSettings> = {}) {
  const fromContext = settingsFromContext(app.node);
  const stage = "stage" in overrides ? overrides.stage : fromContext.stage;
  const settings: MasklineSettings = {
    ...fromContext,
    ...overrides,
    stage,
    production: stage === undefined || stage === "prod",
  };
  const names = stageNames(settings.stage);
  const stateful = new StatefulStack(app, names.statefulStack, {
    env,
    names,
    production: settings.production,
    sessionRetentionDays: settings.sessionRetentionDays,
    description: `Maskline data${settings.stage ? ` (${settings.stage})` : ""}: KMS key, DynamoDB table, SQS queues, Twilio secret, event bus and archive${settings.production ? " (retained)" : ""}`,
  });
  const stateless = new AppStack(app, names.appStack, {
    env,
    stateful,
    settings,
    names,
    description: `Maskline functions, HTTP API, schedule, alarms and dashboard${settings.stage ? ` (${settings.stage})` : ""} (stateless)`,
  });
  if (!nagged.has(app)) {
    nagged.add(app);
    Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  }
  return { stateful, app: stateless, settings, names };
}

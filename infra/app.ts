import { App } from "aws-cdk-lib";
import { buildMaskline } from "./maskline.ts";

// `npx cdk synth|deploy` (cdk.json runs this file with tsx). Account and region come from the CLI's
// profile; without one the stacks stay environment-agnostic, which is how CI synthesizes offline.
const app = new App();
const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;
buildMaskline(app, account && region ? { account, region } : undefined);
app.synth();

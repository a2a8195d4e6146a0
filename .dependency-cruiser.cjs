/** Architecture rules, checked in `npm test`. */
module.exports = {
  forbidden: [
    {
      name: "domain-is-pure",
      severity: "error",
      comment: "shared/domain holds the rules: no AWS SDK, no Twilio, no HTTP, no adapters.",
      from: { path: "^shared/domain" },
      to: {
        path: [
          "@aws-sdk",
          "@aws-lambda-powertools",
          "^node_modules/twilio",
          "@middy",
          "aws-lambda",
          "^shared/(adapters|http|app)",
          "^(node:)?(http|https|net)$",
        ],
      },
    },
    {
      name: "app-uses-ports-not-adapters",
      severity: "error",
      comment: "Application services depend on ports; adapters are wired in by composition roots.",
      from: { path: "^shared/app" },
      to: { path: ["@aws-sdk", "^node_modules/twilio", "^shared/(adapters|http)", "@middy"] },
    },
    {
      name: "inbound-never-loads-twilio-rest",
      severity: "error",
      comment: "The inbound bundle must stay small: webhook validation and TwiML only.",
      from: { path: "^functions/inbound" },
      to: { path: ["^shared/adapters/twilio-gateway", "^node_modules/twilio/lib/(index|rest)"] },
    },
    { name: "no-cycles", severity: "error", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "(^|/)(cdk\\.out|node_modules)/" },
  },
};

/**
 * Tracing in a Lambda with X-Ray on: SDK commands and Twilio requests become subsegments of the
 * invocation's segment. Runs in its own process (the tracer is chosen once per process, from the env).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import AWSXRay from "aws-xray-sdk-core";

Object.assign(process.env, {
  AWS_LAMBDA_FUNCTION_NAME: "maskline-test",
  AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x",
  AWS_XRAY_DAEMON_ADDRESS: "127.0.0.1:2000",
  AWS_XRAY_CONTEXT_MISSING: "IGNORE_ERROR",
  POWERTOOLS_TRACE_ENABLED: "true",
});
const { traceClient, traced } = await import("../../shared/adapters/observability.ts");

test("each DynamoDB command and each traced call is a subsegment of the invocation's segment", async () => {
  // A DynamoDB endpoint that answers every GetItem with an empty item.
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
    res.end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const client = traceClient(
    new DynamoDBClient({
      endpoint: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "y" },
    }),
    "DynamoDB",
  );
  const segment = new AWSXRay.Segment("maskline-test");
  try {
    await new Promise<void>((resolve, reject) => {
      AWSXRay.getNamespace().run(() => {
        AWSXRay.setSegment(segment);
        (async () => {
          await client.send(new GetItemCommand({ TableName: "t", Key: { pk: { S: "a" } } }));
          await traced("Twilio POST /2010-04-01/Accounts/AC…/Messages.json", async () => "sent");
        })().then(resolve, reject);
      });
    });
    const names = (segment.subsegments ?? []).map((s) => s.name);
    assert.deepEqual(names, ["DynamoDB.GetItem", "Twilio POST /2010-04-01/Accounts/AC…/Messages.json"]);
    assert.ok(
      (segment.subsegments ?? []).every((s) => s.isClosed()),
      "subsegments are closed",
    );
  } finally {
    client.destroy();
    server.close();
  }
});

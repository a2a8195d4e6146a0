import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type { SQSEvent } from "aws-lambda";
import { startScheduler, startSqsPoller } from "../../local/pollers.ts";
import { startLocalAws } from "../support/stack.ts";

let aws: Awaited<ReturnType<typeof startLocalAws>>;

describe("local event-source pollers behave like Lambda's", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("SQS: partial batch failures are redelivered in group order and land in the DLQ after maxReceiveCount", async () => {
    const { queue } = await aws.fresh({ visibilityTimeoutSeconds: 1 });
    const send = (group: string, body: string) =>
      aws.sqsClient.send(
        new SendMessageCommand({
          QueueUrl: queue.queueUrl,
          MessageBody: body,
          MessageGroupId: group,
          MessageDeduplicationId: body,
        }),
      );
    for (const body of ["a1", "a2", "a3"]) await send("a", body);
    for (const body of ["poison", "b2"]) await send("b", body);
    const seen: string[] = [];
    const attempts = new Map<string, number>();
    const arn = await aws.sqsClient.send(
      new GetQueueAttributesCommand({ QueueUrl: queue.queueUrl, AttributeNames: ["QueueArn"] }),
    );
    const poller = startSqsPoller({
      client: aws.sqsClient,
      queueUrl: queue.queueUrl,
      queueArn: arn.Attributes?.QueueArn ?? "",
      visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
      handler: async (event: SQSEvent) => {
        const failures: { itemIdentifier: string }[] = [];
        const failedGroups = new Set<string>();
        for (const r of event.Records) {
          const group = r.attributes.MessageGroupId ?? "";
          const n = (attempts.get(r.body) ?? 0) + 1;
          attempts.set(r.body, n);
          // a2 fails twice then succeeds; poison always fails; later records of a failed group are skipped.
          if (failedGroups.has(group) || (r.body === "a2" && n <= 2) || r.body === "poison") {
            failedGroups.add(group);
            failures.push({ itemIdentifier: r.messageId });
          } else seen.push(r.body);
        }
        return { batchItemFailures: failures };
      },
    });
    try {
      const deadline = Date.now() + 30_000;
      let dlq: string[] = [];
      while (Date.now() < deadline && !(seen.includes("a3") && dlq.length === 2)) {
        const res = await aws.sqsClient.send(
          new ReceiveMessageCommand({ QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10 }),
        );
        dlq = dlq.concat((res.Messages ?? []).map((m) => m.Body ?? ""));
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(
        seen.filter((b) => b.startsWith("a")),
        ["a1", "a2", "a3"],
        "group a in order despite a2's failures",
      );
      // As with SQS FIFO and skipGroupOnError, the record stuck behind the poison one shares its fate:
      // both reach the DLQ (with their bodies, for replay), in order; nothing is lost or reordered.
      assert.deepEqual(dlq, ["poison", "b2"], "the poison record and the one behind it went to the DLQ");
      assert.ok((attempts.get("poison") ?? 0) >= queue.maxReceiveCount);
    } finally {
      await poller.stop();
    }
  });

  test("scheduler: a run that reports more work is followed at once (continuation)", async () => {
    let runs = 0;
    const scheduler = startScheduler(async () => ({ more: ++runs < 3 }), 60_000);
    await scheduler.runNow();
    await scheduler.stop();
    assert.equal(runs, 3);
  });
});

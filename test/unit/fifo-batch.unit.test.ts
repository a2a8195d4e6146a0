import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Context, SQSRecord } from "aws-lambda";
import { createForwardHandler } from "../../functions/forward/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { processFifoBatch } from "../../shared/adapters/fifo-batch.ts";
import type { ForwardService } from "../../shared/app/forward.ts";

// The SQS FIFO batch rule the forward function and the embedded stack share: one message group runs in
// order, different groups run side by side, and a failure holds back the rest of its own group only.

const record = (id: string, group: string | undefined, body = id): SQSRecord => ({
  messageId: id,
  receiptHandle: `rh-${id}`,
  body,
  attributes: {
    ApproximateReceiveCount: "1",
    SentTimestamp: "0",
    SenderId: "test",
    ApproximateFirstReceiveTimestamp: "0",
    MessageGroupId: group,
  },
  messageAttributes: {},
  md5OfBody: "",
  eventSource: "aws:sqs",
  eventSourceARN: "arn:aws:sqs:local:000000000000:q.fifo",
  awsRegion: "us-east-1",
});

/** A gate: a promise and the function that opens it. */
const gate = () => {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
};

describe("processFifoBatch: order within a message group, concurrency across groups", () => {
  test("a group's records run one after another, in batch order", async () => {
    const records = ["a1", "b1", "a2", "b2", "a3"].map((id) => record(id, id[0]));
    const running = new Set<string>();
    const started: string[] = [];
    const result = await processFifoBatch({ Records: records }, async (r) => {
      const group = r.attributes.MessageGroupId ?? "";
      assert.ok(!running.has(group), `${r.body} started while an earlier record of its group ran`);
      running.add(group);
      started.push(r.body);
      await new Promise((resolve) => setTimeout(resolve, 1));
      running.delete(group);
    });
    assert.deepEqual(result.batchItemFailures, []);
    assert.deepEqual(
      started.filter((id) => id.startsWith("a")),
      ["a1", "a2", "a3"],
    );
    assert.deepEqual(
      started.filter((id) => id.startsWith("b")),
      ["b1", "b2"],
    );
  });

  test("another group is not held behind a slow record: b runs while a1 is still running", async () => {
    const bDone = gate();
    const records = [record("a1", "a"), record("b1", "b")];
    const result = await processFifoBatch({ Records: records }, async (r) => {
      // a1 finishes only once b1 has run: processing one record after another would never get there.
      if (r.body === "a1")
        await Promise.race([
          bDone.opened,
          new Promise((_, reject) => setTimeout(() => reject(new Error("b1 waited for a1")), 2000)),
        ]);
      else bDone.open();
    });
    assert.deepEqual(result.batchItemFailures, []);
  });

  test("a failure fails the later records of its group without running them; other groups go on", async () => {
    const records = ["a1", "b1", "a2", "c1", "b2", "a3", "b3"].map((id) => record(id, id[0]));
    const ran: string[] = [];
    const failures: string[] = [];
    const result = await processFifoBatch(
      { Records: records },
      async (r) => {
        ran.push(r.body);
        if (r.body === "a1" || r.body === "b2") throw new Error(`${r.body} failed`);
      },
      { onFailure: (r) => failures.push(r.messageId) },
    );
    assert.deepEqual(
      result.batchItemFailures.map((f) => f.itemIdentifier),
      ["a1", "a2", "b2", "a3", "b3"],
      "the failed records and every later one of their groups, in batch order",
    );
    assert.deepEqual(ran.sort(), ["a1", "b1", "b2", "c1"], "a2, a3 and b3 never ran");
    assert.deepEqual(failures.sort(), ["a1", "b2"], "onFailure hears of the records that threw");
  });

  test("at most `concurrency` groups run at once", async () => {
    const records = Array.from({ length: 12 }, (_, i) => record(`m${i}`, `g${i % 6}`));
    let running = 0;
    let most = 0;
    const result = await processFifoBatch(
      { Records: records },
      async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 2));
        running--;
      },
      { concurrency: 3 },
    );
    assert.deepEqual(result.batchItemFailures, []);
    assert.equal(most, 3);
  });

  test("records without a group (a standard queue) are each their own group", async () => {
    const records = [record("x", undefined), record("y", undefined)];
    const result = await processFifoBatch({ Records: records }, async (r) => {
      if (r.body === "x") throw new Error("x failed");
    });
    assert.deepEqual(
      result.batchItemFailures.map((f) => f.itemIdentifier),
      ["x"],
    );
  });

  test("the forward handler keeps no batch state: two invocations at once each report only their own failures", async () => {
    const job = (id: string) => JSON.stringify({ messageId: id, sessionId: `ses_${id[0]}` });
    // A stand-in for the service (fault injection): "x1" fails, every forward takes a few ms.
    const service = {
      forward: async ({ messageId }: { messageId: string }) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (messageId === "x1") throw new Error("injected");
        return "forwarded" as const;
      },
    } as unknown as ForwardService;
    const handler = createForwardHandler({ service, logger });
    const context = {} as Context;
    const [first, second] = await Promise.all([
      handler({ Records: [record("x1", "x", job("x1")), record("x2", "x", job("x2"))] }, context),
      handler({ Records: [record("y1", "y", job("y1")), record("y2", "y", job("y2"))] }, context),
    ]);
    assert.deepEqual(
      first.batchItemFailures.map((f) => f.itemIdentifier),
      ["x1", "x2"],
    );
    assert.deepEqual(second.batchItemFailures, [], "the other invocation's failure is not this one's");
  });
});

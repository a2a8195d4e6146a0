import { randomBytes } from "node:crypto";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { type DynamoDBDocumentClient, TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import { type Poller, startSqsPoller } from "../../local/pollers.ts";
import { processFifoBatch } from "../../shared/adapters/fifo-batch.ts";
import { forwardConsumer } from "../../shared/resources.ts";

/**
 * The floor of the message path: the infrastructure work with no application logic. Accepting a message
 * is the same DynamoDB transaction the inbound handler writes (event item + message item, guarded) and the
 * same FIFO SendMessage; delivering it is the embedded stack's own SQS poller (receive, batch, delete, as
 * many invocations at once) invoking a handler that makes one HTTP POST per message to the Twilio
 * stand-in, under the forward function's batch rule (sessions concurrently, each in order). No webhook parsing,
 * signature check, routing read, session read, send claim, outcome event or stream publishing.
 */
export interface FloorOptions {
  doc: DynamoDBDocumentClient;
  sqs: SQSClient;
  tableName: string;
  queueUrl: string;
  twilioUrl: string;
  accountSid: string;
  authToken: string;
  visibilityTimeoutSeconds: number;
}

export interface FloorMessage {
  id: string;
  sessionId: string;
  from: string;
  to: string;
  proxy: string;
  recipient: string;
  recipientProxy: string;
  body: string;
}

export class FloorPipeline {
  /** Wall time of each accept (what a webhook invocation would bill) and of each delivered batch. */
  readonly acceptMs: number[] = [];
  readonly batchMs: number[] = [];
  private poller: Poller | undefined;
  private readonly auth: string;

  constructor(private readonly options: FloorOptions) {
    this.auth = `Basic ${Buffer.from(`${options.accountSid}:${options.authToken}`).toString("base64")}`;
  }

  async accept(m: FloorMessage): Promise<void> {
    const started = performance.now();
    const now = Date.now();
    const occurredAt = new Date(now).toISOString();
    const eventId = `evt_${randomBytes(10).toString("hex")}`;
    await this.options.doc.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Put: {
              TableName: this.options.tableName,
              Item: {
                pk: `SESSION#${m.sessionId}`,
                sk: `EVENT#${occurredAt}#${eventId}`,
                kind: "event",
                id: eventId,
                type: "MessageReceived",
                occurredAt,
                sessionId: m.sessionId,
                detailVersion: 1,
                detail: {
                  messageId: m.id,
                  source: "sms",
                  from: m.from,
                  to: m.recipient,
                  proxyNumber: m.recipientProxy,
                  bodyLength: m.body.length,
                  numMedia: 0,
                },
              },
            },
          },
          {
            Put: {
              TableName: this.options.tableName,
              Item: {
                pk: `MESSAGE#${m.id}`,
                sk: "MESSAGE",
                kind: "message",
                messageId: m.id,
                sessionId: m.sessionId,
                state: "received",
                source: "sms",
                from: m.from,
                recipient: m.recipient,
                recipientProxy: m.recipientProxy,
                body: m.body,
                mediaUrls: [],
                receivedAt: now,
                claimedAt: null,
                twilioSid: null,
                ttl: Math.floor(now / 1000) + 72 * 3600,
              },
              ConditionExpression: "attribute_not_exists(pk)",
            },
          },
        ],
      }),
    );
    await this.options.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.options.queueUrl,
        MessageBody: JSON.stringify({
          messageId: m.id,
          sessionId: m.sessionId,
          to: m.recipient,
          from: m.recipientProxy,
          body: m.body,
        }),
        MessageGroupId: m.sessionId,
        MessageDeduplicationId: m.id,
      }),
    );
    this.acceptMs.push(performance.now() - started);
  }

  /**
   * Delivery through the embedded stack's own SQS poller (local/pollers.ts: the stand-in for Lambda's event
   * source mapping, with its receive, batching and delete), invoking a handler that only POSTs each record.
   */
  startConsumer() {
    if (this.poller) return;
    const messagesUrl = `${this.options.twilioUrl}/2010-04-01/Accounts/${this.options.accountSid}/Messages.json`;
    this.poller = startSqsPoller({
      client: this.options.sqs,
      queueUrl: this.options.queueUrl,
      queueArn: `arn:aws:sqs:us-east-1:000000000000:${this.options.queueUrl.split("/").pop()}`,
      visibilityTimeoutSeconds: this.options.visibilityTimeoutSeconds,
      batchSize: forwardConsumer.batchSize,
      concurrency: forwardConsumer.localConcurrency,
      // The same batch rule as the forward function: sessions side by side, each in order.
      handler: async (event) => {
        const started = performance.now();
        const result = await processFifoBatch(event, async (record) => {
          const job = JSON.parse(record.body) as {
            to: string;
            from: string;
            body: string;
            messageId: string;
          };
          const response = await fetch(messagesUrl, {
            method: "POST",
            headers: { authorization: this.auth, "content-type": "application/x-www-form-urlencoded" },
            body: new URLSearchParams({
              To: job.to,
              From: job.from,
              Body: job.body,
              StatusCallback: `https://maskline-bench.example.com/twilio/status?m=${job.messageId}`,
            }).toString(),
          });
          await response.arrayBuffer();
        });
        this.batchMs.push(performance.now() - started);
        return result;
      },
    });
  }

  async stop() {
    await this.poller?.stop();
    this.poller = undefined;
  }
}

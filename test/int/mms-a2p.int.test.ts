import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

/**
 * Through the real inbound and forward handlers on DynamoDB Local and the SQS server, with the official
 * twilio client against the Twilio sandbox: an MMS reaches the counterpart with its pictures, and with a
 * Messaging Service every forward names it while the recipient still sees their own proxy number.
 */

const A = "+12025550111";
const B = "+12025550112";
const SERVICE = `MG${"5e".repeat(16)}`;
const MEDIA = [
  "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/MM0123/Media/ME0001",
  "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/MM0123/Media/ME0002",
];

let aws: Awaited<ReturnType<typeof startLocalAws>>;

describe("MMS and A2P 10DLC sending end to end", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("an inbound MMS (NumMedia=2) reaches the counterpart from their proxy with both media URLs", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { proxyA, proxyB } = await p.open(A, B);
      const inbound = await p.sandbox.phoneSends(A, proxyA, "The balcony, as promised", { mediaUrls: MEDIA });
      assert.equal(inbound.status, 200);
      assert.match(inbound.messageSid, /^MM[0-9a-f]{32}$/, "an MMS has an MM sid, as on Twilio");
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "the MMS forwarded to B");
      const toB = p.sentTo(B)[0];
      assert.equal(toB?.from, proxyB);
      assert.equal(toB?.body, "The balcony, as promised");
      assert.deepEqual(toB?.mediaUrls, MEDIA, "both pictures, in order, on the outbound Messages.create");
      // The phone shows the pictures it received.
      const entry = p.sandbox.phones.get(B)?.find((e) => e.detail === toB?.sid);
      assert.deepEqual(entry?.media, MEDIA);

      // A picture without text is forwarded too.
      await p.sandbox.phoneSends(B, proxyB, "", { mediaUrls: [MEDIA[0] ?? ""] });
      await p.waitFor(() => p.sentTo(A).length === 1, 10_000, "the picture forwarded to A");
      assert.deepEqual(p.sentTo(A)[0]?.mediaUrls, [MEDIA[0]]);
      assert.equal(p.sentTo(A)[0]?.from, proxyA);
    } finally {
      await p.stop();
    }
  });

  test("with TWILIO_MESSAGING_SERVICE_SID every forward carries the service and From = the recipient's proxy", async () => {
    const p = await startPipeline(aws, { messagingServiceSid: SERVICE });
    try {
      await p.pool(2);
      const { proxyA, proxyB } = await p.open(A, B);
      await p.sandbox.phoneSends(A, proxyA, "Registered traffic");
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "forward to B");
      await p.sandbox.phoneSends(B, proxyB, "Registered reply");
      await p.waitFor(() => p.sentTo(A).length === 1, 10_000, "reply to A");
      for (const [to, proxy] of [
        [B, proxyB],
        [A, proxyA],
      ] as const) {
        const sent = p.sentTo(to)[0];
        assert.equal(sent?.messagingServiceSid, SERVICE);
        assert.equal(sent?.from, proxy);
      }
    } finally {
      await p.stop();
    }
  });
});

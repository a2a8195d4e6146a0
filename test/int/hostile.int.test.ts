import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { DeleteCommand } from "@aws-sdk/lib-dynamodb";
import { itemKeys } from "../../shared/domain/projection.ts";
import { CONTENT_BLOCKED, OUT_OF_SESSION, RATE_LIMIT_NOTICE, startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

// Rate windows are a day long here so a test never straddles a window boundary.
// Hostile traffic through the real handlers on DynamoDB Local and the Twilio stand-in: reply loops, floods,
// replays and the race between acceptance and a session ending.

let aws: Awaited<ReturnType<typeof startLocalAws>>;
const A = "+12025550111";
const B = "+12025550112";
const STRANGER = "+12025550199";

const eventsOf = (items: Record<string, unknown>[], type: string) =>
  items.filter((i) => i.kind === "event" && i.type === type);
const replyOf = (twiml: string) => /<Message>([\s\S]*?)<\/Message>/.exec(twiml)?.[1] ?? null;

describe("hostile traffic", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("a pool number texting another pool number gets no auto-reply, ever (no loop between our numbers)", async () => {
    const p = await startPipeline(aws);
    try {
      const [ours, other] = await p.pool(2);
      for (let i = 0; i < 3; i++) {
        const { status, twiml } = await p.sandbox.phoneSends(ours as string, other as string, `ping ${i}`);
        assert.equal(status, 200);
        assert.equal(replyOf(twiml), null);
      }
      // HELP is answered to people, not to our own numbers (the answer would be a text between two of ours).
      const help = await p.sandbox.phoneSends(ours as string, other as string, "HELP");
      assert.equal(help.status, 200);
      assert.equal(replyOf(help.twiml), null);
      const items = await p.scan();
      assert.equal(eventsOf(items, "OutOfSessionMessage").length, 3, "each text is still an event");
      assert.ok(
        eventsOf(items, "OutOfSessionMessage").every(
          (e) => (e.detail as { replied: boolean }).replied === false,
        ),
      );
    } finally {
      await p.stop();
    }
  });

  test("a stranger's 30 texts get one auto-reply per proxy number within the interval; the rest are events only", async () => {
    const p = await startPipeline(aws);
    try {
      const [proxy1, proxy2] = await p.pool(2);
      const replies: (string | null)[] = [];
      for (let i = 0; i < 30; i++)
        replies.push(replyOf((await p.sandbox.phoneSends(STRANGER, proxy1 as string, `hello ${i}`)).twiml));
      assert.equal(replies.filter((r) => r === OUT_OF_SESSION).length, 1);
      assert.equal(replies[0], OUT_OF_SESSION, "the first one is answered");
      // Another proxy number is another conversation: one reply there too.
      assert.equal(
        replyOf((await p.sandbox.phoneSends(STRANGER, proxy2 as string, "hi")).twiml),
        OUT_OF_SESSION,
      );
      // Concurrent texts cannot both win the reply.
      const burst = await Promise.all(
        Array.from({ length: 6 }, (_, i) => p.sandbox.phoneSends("+12025550198", proxy1 as string, `b${i}`)),
      );
      assert.equal(burst.filter((r) => replyOf(r.twiml) === OUT_OF_SESSION).length, 1);
      assert.equal(eventsOf(await p.scan(), "OutOfSessionMessage").length, 37);
    } finally {
      await p.stop();
    }
  });

  test("the auto-reply interval: after it has passed the sender is answered again", async () => {
    const p = await startPipeline(aws, { traffic: { autoReplyIntervalSeconds: 1 } });
    try {
      const [proxy] = await p.pool(1);
      assert.equal(
        replyOf((await p.sandbox.phoneSends(STRANGER, proxy as string, "1")).twiml),
        OUT_OF_SESSION,
      );
      assert.equal(replyOf((await p.sandbox.phoneSends(STRANGER, proxy as string, "2")).twiml), null);
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal(
        replyOf((await p.sandbox.phoneSends(STRANGER, proxy as string, "3")).twiml),
        OUT_OF_SESSION,
      );
    } finally {
      await p.stop();
    }
  });

  test("a flood: beyond the sender's limit nothing is forwarded, one notice per window, order kept", async () => {
    const p = await startPipeline(aws, { traffic: { senderRateLimit: { count: 5, seconds: 86_400 } } });
    try {
      await p.pool(2);
      const { proxyA } = await p.open(A, B);
      const answers: (string | null)[] = [];
      for (let i = 0; i < 9; i++)
        answers.push(replyOf((await p.sandbox.phoneSends(A, proxyA, `m${i}`)).twiml));
      await p.waitFor(() => p.sentTo(B).length >= 5, 20_000, "the first five forwarded");
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["m0", "m1", "m2", "m3", "m4"],
      );
      assert.deepEqual(answers, [null, null, null, null, null, RATE_LIMIT_NOTICE, null, null, null]);
      const blocked = eventsOf(await p.scan(), "MessageBlocked");
      assert.equal(blocked.length, 4);
      assert.ok(blocked.every((e) => (e.detail as { reason: string }).reason === "rate-limit"));
    } finally {
      await p.stop();
    }
  });

  test("control characters (NUL, BEL, ESC) and invisible separators never reach a phone and cannot hide a contact from the content policy", async () => {
    const p = await startPipeline(aws, { traffic: { contentPolicy: "block-contacts" } });
    try {
      await p.pool(2, 200);
      const { proxyA } = await p.open(A, B);
      const hidden = await p.sandbox.phoneSends(A, proxyA, "call me 415\u0000555\u00000100");
      assert.equal(replyOf(hidden.twiml), CONTENT_BLOCKED);
      // Invisible characters that carry no text (zero-width space, word joiner, BOM, soft hyphen) neither.
      const invisible = await p.sandbox.phoneSends(
        A,
        proxyA,
        "mail jo\u200B@exam\u00ADple.com or jo\u2060@x\uFEFF.io",
      );
      assert.equal(replyOf(invisible.twiml), CONTENT_BLOCKED);
      // Right-to-left marks and overrides are text (Arabic, Hebrew): kept, as are zero-width joiners (emoji
      // sequences, Persian). Tab and line breaks too.
      const text = "hi\u0000 there\u0007\u001b\u007f\u200B\tok\n\u202Eabc\u202C \u{1F469}\u200D\u{1F467}";
      assert.equal(replyOf((await p.sandbox.phoneSends(A, proxyA, text)).twiml), null);
      await p.waitFor(() => p.sentTo(B).length >= 1, 20_000, "the clean text");
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["hi there\tok\n\u202Eabc\u202C \u{1F469}\u200D\u{1F467}"],
      );
    } finally {
      await p.stop();
    }
  });

  test("the rate limit comes before the content policy: a flood of contact details gets one notice per window, not one per text", async () => {
    const p = await startPipeline(aws, {
      traffic: { senderRateLimit: { count: 3, seconds: 86_400 }, contentPolicy: "block-contacts" },
    });
    try {
      await p.pool(2, 300);
      const { proxyA } = await p.open(A, B);
      const answers: (string | null)[] = [];
      for (let i = 0; i < 7; i++)
        answers.push(replyOf((await p.sandbox.phoneSends(A, proxyA, `mail me at jo${i}@example.com`)).twiml));
      // Each text the rate limit lets through reaches the content policy (and takes a place in the window);
      // past the limit the rate limit stops them first.
      assert.deepEqual(answers, [
        CONTENT_BLOCKED,
        CONTENT_BLOCKED,
        CONTENT_BLOCKED,
        RATE_LIMIT_NOTICE,
        null,
        null,
        null,
      ]);
      const reasons = eventsOf(await p.scan(), "MessageBlocked").map(
        (e) => (e.detail as { reason: string }).reason,
      );
      assert.equal(reasons.filter((r) => r === "content").length, 3);
      assert.equal(reasons.filter((r) => r === "rate-limit").length, 4);
      // A clean text is over the limit too: the window counts every text that passed it.
      assert.equal(replyOf((await p.sandbox.phoneSends(A, proxyA, "hello")).twiml), null);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(p.sentTo(B).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("concurrent webhooks cannot overshoot the limit", async () => {
    const p = await startPipeline(aws, { traffic: { senderRateLimit: { count: 4, seconds: 86_400 } } });
    try {
      await p.pool(2);
      const { proxyA } = await p.open(A, B);
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => p.sandbox.phoneSends(A, proxyA, `c${i}`)),
      );
      assert.ok(results.every((r) => r.status === 200));
      const items = await p.scan();
      assert.equal(eventsOf(items, "MessageReceived").length, 4);
      assert.equal(eventsOf(items, "MessageBlocked").length, 8);
      assert.equal(results.filter((r) => replyOf(r.twiml) === RATE_LIMIT_NOTICE).length, 1);
      await p.waitFor(() => p.sentTo(B).length === 4, 20_000, "four forwarded");
    } finally {
      await p.stop();
    }
  });

  test("a replay after the message record's retention expired is still refused (replay marker)", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { proxyA } = await p.open(A, B);
      const { messageSid } = await p.sandbox.phoneSends(A, proxyA, "once only");
      await p.waitFor(() => p.sentTo(B).length === 1, 20_000, "first forward");
      // Retention removes the message item (DynamoDB TTL); the replay marker outlives it.
      await aws.doc.send(new DeleteCommand({ TableName: p.tableName, Key: itemKeys.message(messageSid) }));
      const replay = await p.sandbox.phoneSends(A, proxyA, "once only", { messageSid });
      assert.equal(replay.status, 200);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(p.sentTo(B).length, 1);
      assert.equal(eventsOf(await p.scan(), "MessageReceived").length, 1);
    } finally {
      await p.stop();
    }
  });

  test("a MessageSid seen again from another sender, while its text waits in the queue, is a 200 duplicate: forwarded once, in its own session", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { proxyA } = await p.open(A, B);
      const other = await p.open("+12025550113", "+12025550114");
      await p.stopForwarding();
      const { messageSid } = await p.sandbox.phoneSends(A, proxyA, "the original");
      // Re-decided, the duplicate falls into another session: the queue must get the original job again.
      const again = await p.sandbox.phoneSends("+12025550113", other.proxyA, "same sid, other sender", {
        messageSid,
      });
      assert.equal(again.status, 200);
      assert.equal(replyOf(again.twiml), null);
      p.startForwarding();
      await p.waitFor(() => p.sentTo(B).length === 1, 20_000, "the original forwarded");
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(
        p.sandbox.messages.map((m) => [m.to, m.body]),
        [[B, "the original"]],
      );
      assert.equal(eventsOf(await p.scan(), "MessageReceived").length, 1);
    } finally {
      await p.stop();
    }
  });

  test("a text accepted while the session was open is forwarded even if the session ends before the send", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(A, B);
      await p.stopForwarding();
      const { status } = await p.sandbox.phoneSends(A, proxyA, "sent just before the close");
      assert.equal(status, 200);
      await p.sessions.closeSession(session.sessionId);
      p.startForwarding();
      await p.waitFor(() => p.sentTo(B).length === 1, 20_000, "the accepted text forwarded");
      assert.equal(p.sentTo(B)[0]?.body, "sent just before the close");
      // After the close, a new text is out of session.
      const late = await p.sandbox.phoneSends(A, proxyA, "after the close");
      assert.equal(replyOf(late.twiml), OUT_OF_SESSION);
    } finally {
      await p.stop();
    }
  });
});

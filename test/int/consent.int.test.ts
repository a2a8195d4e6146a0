import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { invoker } from "../support/http.ts";
import { HELP_REPLY, startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

// Keywords and pool-wide consent through the real webhook, forwarder and product API, on DynamoDB Local and
// the Twilio stand-in. The stand-in sends no OptOutType (bare numbers, no Messaging Service): Maskline must
// recognise the keywords itself.

let aws: Awaited<ReturnType<typeof startLocalAws>>;
const GUEST = "+12025550131";
const HOST = "+12025550132";
const OTHER_HOST = "+12025550133";

const replyOf = (twiml: string) => /<Message>([\s\S]*?)<\/Message>/.exec(twiml)?.[1] ?? null;
const settle = () => new Promise((r) => setTimeout(r, 1200));

describe("keywords and consent", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("STOP is never relayed and stops everything to that person from every pool number until START", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(3);
      const first = await p.open(GUEST, HOST);
      // The keyword alone, as a phone sends it: not relayed, no reply of ours (Twilio confirms to the handset).
      const stop = await p.sandbox.phoneSends(GUEST, first.proxyA, "Stop.");
      assert.equal(replyOf(stop.twiml), null);
      // A sentence with "stop" in it is a message, not a keyword.
      await p.sandbox.phoneSends(GUEST, first.proxyA, "Stop texting me at night please");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the sentence forwarded");
      assert.deepEqual(
        p.sentTo(HOST).map((m) => m.body),
        ["Stop texting me at night please"],
      );
      // The host's reply is not sent to the opted-out guest.
      await p.sandbox.phoneSends(HOST, first.proxyB, "ok, sorry!");
      // Nor a platform message, nor a new session's text from another pool number.
      await p.sessions.sendPlatformMessage(first.session.sessionId, {
        to: GUEST,
        body: "Your booking is confirmed",
      });
      const second = await p.open(GUEST, OTHER_HOST);
      await p.sandbox.phoneSends(OTHER_HOST, second.proxyB, "hello from another host");
      await settle();
      assert.equal(p.sentTo(GUEST).length, 0, "nothing reaches the opted-out guest");
      const items = await p.scan();
      const blocked = items.filter(
        (i) =>
          i.kind === "event" &&
          i.type === "MessageBlocked" &&
          (i.detail as { reason: string }).reason === "recipient-opted-out",
      );
      assert.equal(blocked.length, 3);
      assert.equal(items.filter((i) => i.kind === "event" && i.type === "ParticipantOptedOut").length, 1);
      // The guest's own messages still reach the host.
      await p.sandbox.phoneSends(GUEST, first.proxyA, "still here");
      await p.waitFor(() => p.sentTo(HOST).some((m) => m.body === "still here"), 20_000, "the guest's text");
      // START to any of our numbers opts back in with Maskline, everywhere...
      const start = await p.sandbox.phoneSends(GUEST, second.proxyA, "start");
      assert.equal(replyOf(start.twiml), null);
      assert.equal((await p.sessions.participant(GUEST as never)).optedOut, false);
      // ...but without a Messaging Service the carrier still blocks the number STOP was sent to (21610):
      // the send fails and is recorded, nothing is lost silently.
      await p.sandbox.phoneSends(HOST, first.proxyB, "are you back?");
      await p.waitFor(
        async () =>
          (await p.scan()).some(
            (i) =>
              i.kind === "event" &&
              i.type === "MessageFailed" &&
              (i.detail as { errorCode: string }).errorCode === "21610",
          ),
        20_000,
        "the carrier's 21610 recorded",
      );
      // START on that number too lifts the carrier's block: delivered again.
      await p.sandbox.phoneSends(GUEST, first.proxyA, "START");
      await p.sandbox.phoneSends(HOST, first.proxyB, "welcome back");
      await p.waitFor(() => p.sentTo(GUEST).length === 1, 20_000, "delivered after START");
      assert.equal(p.sentTo(GUEST)[0]?.body, "welcome back");
      assert.ok(!p.sentTo(HOST).some((m) => /^(stop|start)\.?$/i.test(m.body)), "no keyword was relayed");
    } finally {
      await p.stop();
    }
  });

  test("HELP and INFO are answered with HELP_REPLY and never relayed, in or out of session", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { proxyA } = await p.open(GUEST, HOST);
      assert.equal(replyOf((await p.sandbox.phoneSends(GUEST, proxyA, "HELP")).twiml), HELP_REPLY);
      assert.equal(replyOf((await p.sandbox.phoneSends(GUEST, proxyA, " info ")).twiml), HELP_REPLY);
      assert.equal(replyOf((await p.sandbox.phoneSends("+12025550199", proxyA, "help")).twiml), HELP_REPLY);
      // Out of session, STOP gets no auto-reply either.
      assert.equal(replyOf((await p.sandbox.phoneSends("+12025550198", proxyA, "STOP")).twiml), null);
      await settle();
      assert.equal(p.sentTo(HOST).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("the product API shows consent: GET /participants/{e164} and optedOut on the session", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(GUEST, proxyA, "UNSUBSCRIBE");
      const call = invoker(
        createAllocateHandler({
          service: p.sessions,
          logger,
          auth: { mode: "token", token: "t".repeat(20) },
          health: async () => ({}),
        }),
        { authorization: `Bearer ${"t".repeat(20)}` },
      );
      const person = await call("GET", `/participants/${encodeURIComponent(GUEST)}`);
      assert.equal(person.status, 200, person.text);
      assert.deepEqual(person.json, {
        phoneNumber: GUEST,
        optedOut: true,
        openSessions: [session.sessionId],
      });
      const host = await call("GET", `/participants/${HOST}`);
      assert.deepEqual(host.json.optedOut, false);
      const view = await call("GET", `/sessions/${session.sessionId}`);
      assert.deepEqual(
        view.json.participants.map((x: { optedOut: boolean }) => x.optedOut),
        [true, false],
      );
      // Opening a session with an opted-out person succeeds and says so.
      const opened = await call("POST", "/sessions", {
        body: { participants: [{ phoneNumber: GUEST }, { phoneNumber: "+12025550135" }] },
      });
      assert.equal(opened.status, 201, opened.text);
      assert.equal(opened.json.participants[0].optedOut, true);
      assert.equal((await call("GET", "/participants/not-a-number")).status, 400);
    } finally {
      await p.stop();
    }
  });

  test("contact-info policy: redacted by default policy, blocked per session with a notice; platform messages exempt", async () => {
    const p = await startPipeline(aws, { traffic: { contentPolicy: "redact-contacts" } });
    try {
      // Proxies that cannot be mistaken for the number in the text.
      await p.pool(4, 200);
      const { session, proxyA } = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(
        GUEST,
        proxyA,
        "Text me on 415 555 0100 or mail me at jo [at] example [dot] com!",
      );
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the redacted text");
      assert.equal(p.sentTo(HOST)[0]?.body, "Text me on [removed] or mail me at [removed]!");
      const received = (await p.scan()).find((i) => i.kind === "event" && i.type === "MessageReceived");
      assert.deepEqual((received?.detail as { removed?: string[] } | undefined)?.removed, ["phone", "email"]);
      for (const contact of ["555 0100", "5550100", "example"])
        assert.ok(!JSON.stringify(received).includes(contact), "the event never carries the contact");
      // Platform messages are exempt.
      await p.sessions.sendPlatformMessage(session.sessionId, { to: HOST, body: "Support: +1 415 555 0199" });
      await p.waitFor(() => p.sentTo(HOST).length === 2, 20_000, "the platform message");
      assert.equal(p.sentTo(HOST)[1]?.body, "Support: +1 415 555 0199");
      // A session that blocks: nothing forwarded, the sender told each time.
      const { session: strict } = await p.sessions.openSession({
        participants: [{ phoneNumber: "+12025550141" as never }, { phoneNumber: "+12025550142" as never }],
        mode: "sms",
        ttlSeconds: 3600,
        ttlMode: "absolute",
        contacts: "block",
      });
      const [a] = strict.participants;
      const blocked = await p.sandbox.phoneSends(a.phoneNumber, a.proxyNumber, "my email is a@b.com");
      assert.equal(replyOf(blocked.twiml), "No contact details, please.");
      await p.sandbox.phoneSends(a.phoneNumber, a.proxyNumber, "see you at 3pm on 2026-05-01");
      await p.waitFor(() => p.sentTo("+12025550142").length === 1, 20_000, "the clean text");
      assert.equal(p.sentTo("+12025550142")[0]?.body, "see you at 3pm on 2026-05-01");
      // "[removed]" can be longer than what it replaces: a text Twilio took must still fit its 1600 characters.
      const mails = Array.from({ length: 228 }, (_, i) => `${String.fromCharCode(97 + (i % 26))}@b.co`).join(
        " ",
      );
      assert.ok(mails.length <= 1600);
      await p.sandbox.phoneSends(GUEST, proxyA, mails);
      await p.waitFor(() => p.sentTo(HOST).length === 3, 20_000, "the long redacted text");
      const long = p.sentTo(HOST)[2]?.body ?? "";
      assert.ok(long.length <= 1600 && long.startsWith("[removed] [removed]") && long.endsWith("…"), long);
    } finally {
      await p.stop();
    }
  });
});

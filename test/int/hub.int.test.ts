import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { invoker } from "../support/http.ts";
import { startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

// Hub numbers below the lower bound (MAX_PROXIES_PER_PARTICIPANT), through the real product API, webhook
// and forwarder on DynamoDB Local and the Twilio stand-in.

let aws: Awaited<ReturnType<typeof startLocalAws>>;
const HOST = "+12025550301";
const GUESTS = Array.from({ length: 8 }, (_, i) => `+1202555032${i}`);
const TOKEN = "t".repeat(20);

const replyOf = (twiml: string) => /<Message>([\s\S]*?)<\/Message>/.exec(twiml)?.[1] ?? null;
const settle = () => new Promise((r) => setTimeout(r, 1200));

interface SessionBody {
  sessionId: string;
  participants: { phoneNumber: string; proxyNumber: string; hub?: true; threadTag?: string }[];
}

describe("hub numbers (MAX_PROXIES_PER_PARTICIPANT)", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  const api = (p: Awaited<ReturnType<typeof startPipeline>>) =>
    invoker(
      createAllocateHandler({
        service: p.sessions,
        logger,
        auth: { mode: "token", token: TOKEN },
        health: async () => ({}),
      }),
      { authorization: `Bearer ${TOKEN}` },
    );

  test("1. at the cap the session still opens (201) with the participant on a hub number and a tag; the counterpart keeps a proxy", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 2 });
    try {
      const pool = await p.pool(4);
      const call = api(p);
      const open = (guest: string, name: string) =>
        call("POST", "/sessions", {
          body: { participants: [{ phoneNumber: HOST }, { phoneNumber: guest, name }], ttlSeconds: 3600 },
        });
      const first = await open(GUESTS[0] as string, "Ann");
      const second = await open(GUESTS[1] as string, "Bob");
      for (const r of [first, second]) {
        assert.equal(r.status, 201);
        assert.equal((r.json as SessionBody).participants[0]?.hub, undefined);
      }
      const third = await open(GUESTS[2] as string, "Kate");
      assert.equal(third.status, 201);
      const body = third.json as SessionBody;
      const [host, guest] = body.participants;
      assert.equal(host?.hub, true);
      assert.equal(host?.threadTag, "#K1", "the counterpart's initial, easy to remember");
      assert.ok(pool.includes(host?.proxyNumber as E164));
      const held = [first, second].map((r) => (r.json as SessionBody).participants[0]?.proxyNumber);
      assert.ok(!held.includes(host?.proxyNumber), "the hub is none of the host's proxies");
      assert.equal(guest?.hub, undefined);
      assert.equal(guest?.threadTag, undefined);
      // The next over-cap session shares the same hub number under its own tag.
      const fourth = (await open(GUESTS[3] as string, "Kim")).json as SessionBody;
      assert.equal(fourth.participants[0]?.proxyNumber, host?.proxyNumber);
      assert.equal(fourth.participants[0]?.threadTag, "#K2");
      // GET shows it the same way; the participant's open sessions include the hub ones.
      const got = await call("GET", `/sessions/${body.sessionId}`);
      assert.equal((got.json as SessionBody).participants[0]?.threadTag, "#K1");
      const person = await p.sessions.participant(HOST as E164);
      assert.equal(person.openSessions.length, 4);
    } finally {
      await p.stop();
    }
  });

  test("2-3. texts reach the hub participant as [#tag] text from the hub; tagged replies route by tag; untagged ones go to the only thread or get the prompt", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const direct = await p.open(HOST, GUESTS[0] as string, 3600, [undefined, "Ann"]);
      const kate = await p.open(HOST, GUESTS[1] as string, 3600, [undefined, "Kate"]);
      const hub = kate.proxyA;
      assert.equal(kate.session.participants[0].threadTag, "#K1");
      // Counterpart → hub participant: from the hub number, behind the tag.
      await p.sandbox.phoneSends(GUESTS[1] as string, kate.proxyB, "Is early check-in possible?");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the tagged text");
      assert.deepEqual(
        p.sentTo(HOST).map((m) => [m.from, m.body]),
        [[hub, "[#K1] Is early check-in possible?"]],
      );
      // Only one hub thread: an untagged reply goes there.
      const untagged = await p.sandbox.phoneSends(HOST, hub, "Yes, from noon");
      assert.equal(replyOf(untagged.twiml), null);
      await p.waitFor(() => p.sentTo(GUESTS[1] as string).length === 1, 20_000, "the untagged reply");
      assert.deepEqual(
        p.sentTo(GUESTS[1] as string).map((m) => [m.from, m.body]),
        [[kate.proxyB, "Yes, from noon"]],
      );
      // A second hub thread: tags decide; case and brackets do not matter; the tag is removed.
      const kim = await p.open(HOST, GUESTS[2] as string, 3600, [undefined, "Kim"]);
      assert.equal(kim.proxyA, hub);
      assert.equal(kim.session.participants[0].threadTag, "#K2");
      await p.sandbox.phoneSends(HOST, hub, "#K2 see you at 3");
      await p.sandbox.phoneSends(HOST, hub, "[#k1] the code is 1234");
      await p.waitFor(() => p.sentTo(GUESTS[2] as string).length === 1, 20_000, "the reply to Kim");
      await p.waitFor(() => p.sentTo(GUESTS[1] as string).length === 2, 20_000, "the reply to Kate");
      assert.equal(p.sentTo(GUESTS[2] as string)[0]?.body, "see you at 3");
      assert.equal(p.sentTo(GUESTS[1] as string)[1]?.body, "the code is 1234");
      // Untagged with two open threads: nothing forwarded, the prompt lists the open tags with names.
      const ambiguous = await p.sandbox.phoneSends(HOST, hub, "thanks!");
      const prompt = replyOf(ambiguous.twiml) ?? "";
      assert.match(prompt, /#K1 Kate/);
      assert.match(prompt, /#K2 Kim/);
      assert.match(prompt, /start your message with/i);
      // An unknown tag gets the prompt too, never a guess.
      const unknown = await p.sandbox.phoneSends(HOST, hub, "#Z9 hello");
      assert.match(replyOf(unknown.twiml) ?? "", /No open conversation has the tag #Z9/);
      await settle();
      assert.equal(p.sentTo(GUESTS[1] as string).length, 2);
      assert.equal(p.sentTo(GUESTS[2] as string).length, 1);
      assert.equal(p.sentTo(GUESTS[0] as string).length, 0);
      // The host's normal proxy session is unaffected.
      await p.sandbox.phoneSends(HOST, direct.proxyA, "#K1 not a tag here");
      await p.waitFor(() => p.sentTo(GUESTS[0] as string).length === 1, 20_000, "the direct text");
      assert.equal(p.sentTo(GUESTS[0] as string)[0]?.body, "#K1 not a tag here");
    } finally {
      await p.stop();
    }
  });

  test("4. hub side is SMS only; platform messages carry the tag; #K1 STOP is a keyword; a voice-only session needing a hub is 409", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      await p.open(HOST, GUESTS[0] as string);
      const kate = await p.open(HOST, GUESTS[1] as string, 3600, [undefined, "Kate"]);
      const hub = kate.proxyA;
      // A call to the hub number, and a call from the counterpart to the hub participant: asked to text.
      for (const [from, to] of [
        [HOST, hub],
        [GUESTS[1] as string, kate.proxyB],
      ] as const) {
        const answer = await p.sandbox.phoneCalls(from, to);
        assert.doesNotMatch(answer.twiml, /<Dial/);
        assert.match(answer.twiml, /<Say>[^<]*text/i);
      }
      await p.sessions.sendPlatformMessage(kate.session.sessionId, { to: HOST, body: "Booking confirmed" });
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the platform message");
      assert.deepEqual(
        p.sentTo(HOST).map((m) => [m.from, m.body]),
        [[hub, "[#K1] Booking confirmed"]],
      );
      const call = api(p);
      const voice = await call("POST", "/sessions", {
        body: { participants: [{ phoneNumber: HOST }, { phoneNumber: GUESTS[2] }], mode: "voice" },
      });
      assert.equal(voice.status, 409);
      assert.match(String((voice.json as { type: string }).type), /pool-exhausted/);
      // The tag is stripped before keyword detection.
      const stop = await p.sandbox.phoneSends(HOST, hub, "#K1 STOP");
      assert.equal(replyOf(stop.twiml), null);
      assert.equal((await p.sessions.participant(HOST as E164)).optedOut, true);
      await settle();
      assert.equal(p.sentTo(GUESTS[1] as string).length, 0, "a keyword is never relayed");
    } finally {
      await p.stop();
    }
  });

  test("4b. a 1600-character text or platform message to a hub participant still fits Twilio's 1600-character limit behind its tag", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      await p.open(HOST, GUESTS[0] as string);
      const kate = await p.open(HOST, GUESTS[1] as string, 3600, [undefined, "Kate"]);
      // 1600 characters with an emoji where the cut falls: "[#K1] " takes 6, "…" one.
      const long = `${"x".repeat(1592)}😀${"y".repeat(6)}`;
      await p.sandbox.phoneSends(GUESTS[1] as string, kate.proxyB, long);
      await p.sessions.sendPlatformMessage(kate.session.sessionId, { to: HOST, body: "p".repeat(1600) });
      await p.waitFor(() => p.sentTo(HOST).length === 2, 20_000, "both texts at the hub participant");
      for (const m of p.sentTo(HOST)) {
        assert.equal(m.from, kate.proxyA);
        assert.ok(m.body.startsWith("[#K1] "), "the tag is kept");
        assert.ok(m.body.length <= 1600, `${m.body.length} characters: Twilio refuses more (21617)`);
        assert.ok(m.body.endsWith("…"), "a shortened text says so");
        assert.doesNotMatch(m.body, /[\uD800-\uDBFF]…$/, "never half an emoji");
      }
      const failed = (await p.sessions.sessionEvents(kate.session.sessionId)).filter(
        (e) => e.type === "MessageFailed",
      );
      assert.deepEqual(failed, []);
    } finally {
      await p.stop();
    }
  });

  test("5. a tag is not reused within the quarantine; both participants may be on hubs", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(4);
      const OTHER = "+12025550399";
      await p.open(HOST, GUESTS[0] as string);
      await p.open(OTHER, GUESTS[1] as string);
      const kate = await p.open(HOST, GUESTS[2] as string, 3600, [undefined, "Kate"]);
      assert.equal(kate.session.participants[0].threadTag, "#K1");
      await p.sessions.closeSession(kate.session.sessionId);
      // A late "#K1 …" after the end is out of session: it reaches nobody.
      const late = await p.sandbox.phoneSends(HOST, kate.proxyA, "#K1 are you there?");
      assert.notEqual(replyOf(late.twiml), null);
      const again = await p.open(HOST, GUESTS[3] as string, 3600, [undefined, "Ken"]);
      assert.equal(again.session.participants[0].threadTag, "#K2", "#K1 is in quarantine");
      // Host and other host, both at their cap: each on their own hub, each with a tag.
      const both = await p.open(HOST, OTHER, 3600, ["Hal", "Pat"]);
      const [h, o] = both.session.participants;
      assert.equal(h.hub, true);
      assert.equal(o.hub, true);
      assert.equal(h.threadTag, "#P1", "the counterpart's initial");
      assert.equal(o.threadTag, "#H1");
      await p.sandbox.phoneSends(OTHER, o.proxyNumber, `${o.threadTag} hello host`);
      await p.waitFor(() => p.sentTo(HOST).some((m) => m.body.endsWith("hello host")), 20_000, "hub to hub");
      const got = p.sentTo(HOST).find((m) => m.body.endsWith("hello host"));
      assert.deepEqual([got?.from, got?.body], [h.proxyNumber, "[#P1] hello host"]);
      await settle();
      assert.equal(p.sentTo(GUESTS[3] as string).length, 0);
      assert.equal(p.sentTo(GUESTS[2] as string).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("6. concurrent opens: never more proxies than the cap, and every open hub session of a person has its own tag", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const opened = await Promise.all(
        GUESTS.map((g) =>
          p.sessions.openSession({
            participants: [{ phoneNumber: HOST as E164 }, { phoneNumber: g as E164, name: "Kate" }],
            mode: "sms",
            ttlSeconds: 3600,
            ttlMode: "absolute",
          }),
        ),
      );
      const hosts = opened.map(({ session }) => session.participants[0]);
      const proxies = hosts.filter((h) => !h.hub);
      assert.equal(proxies.length, 1, "the last proxy slot went to exactly one session");
      const tags = hosts.filter((h) => h.hub).map((h) => h.threadTag);
      assert.equal(tags.length, GUESTS.length - 1);
      assert.equal(new Set(tags).size, tags.length, "tags are unique");
      assert.equal(new Set(hosts.filter((h) => h.hub).map((h) => h.proxyNumber)).size, 1, "one hub number");
      const slots = (await p.scan()).filter((i) => i.pk === `PERSON#${HOST}` && i.kind === "cap-slot");
      assert.deepEqual(
        slots.map((i) => [i.sk, i.proxyNumber]),
        [["PROXYSLOT#0", proxies[0]?.proxyNumber]],
        "its one cap slot holds the proxy",
      );
    } finally {
      await p.stop();
    }
  });
  test("7. a person whose only open sessions are on their hub is still a participant: POST /numbers is 409", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const call = api(p);
      const open = (guest: string) =>
        call("POST", "/sessions", {
          body: { participants: [{ phoneNumber: HOST }, { phoneNumber: guest }] },
        });
      const onProxy = (await open(GUESTS[0] as string)).json as SessionBody;
      const onHub = (await open(GUESTS[1] as string)).json as SessionBody;
      assert.equal(onHub.participants[0]?.hub, true);
      assert.equal((await call("DELETE", `/sessions/${onProxy.sessionId}`)).status, 200);
      const refused = await call("POST", "/numbers", { body: { phoneNumber: HOST } });
      assert.equal(refused.status, 409, refused.text);
      assert.equal(refused.json.type, "https://maskline.dev/problems/number-is-participant");
      assert.equal((await call("DELETE", `/sessions/${onHub.sessionId}`)).status, 200);
      assert.equal((await call("POST", "/numbers", { body: { phoneNumber: HOST } })).status, 201);
    } finally {
      await p.stop();
    }
  });
  test("8. failOnParticipantConflict sees a shared session on the participant's hub (their side is a thread, not a pair)", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const call = api(p);
      const open = (a: string, b: string, failOnParticipantConflict?: true) =>
        call("POST", "/sessions", {
          body: { participants: [{ phoneNumber: a }, { phoneNumber: b }], failOnParticipantConflict },
        });
      await open(HOST, GUESTS[0] as string);
      const onHub = (await open(HOST, GUESTS[1] as string)).json as SessionBody;
      assert.equal(onHub.participants[0]?.hub, true);
      for (const [a, b] of [
        [HOST, GUESTS[1] as string],
        [GUESTS[1] as string, HOST],
      ] as const) {
        const refused = await open(a, b, true);
        assert.equal(refused.status, 409, refused.text);
        assert.equal(refused.json.type, "https://maskline.dev/problems/participant-conflict");
        assert.equal(refused.json.sessionId, onHub.sessionId);
      }
    } finally {
      await p.stop();
    }
  });
});

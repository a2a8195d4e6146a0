import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TransactionConflictException } from "@aws-sdk/client-dynamodb";
import { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { KeyedPseudonyms } from "../../shared/app/pseudonyms.ts";
import { latestConsent } from "../../shared/domain/consent.ts";
import { eraseItem, rewriteValue } from "../../shared/domain/erasure.ts";
import { domainEventSchema, makeEvent } from "../../shared/domain/events.ts";
import { decideMessage, type MessageCommand } from "../../shared/domain/message.ts";
import { type E164, isPseudonym, PSEUDONYM_PATTERN, toE164 } from "../../shared/domain/phone.ts";
import { eventPartition, projectEvents } from "../../shared/domain/projection.ts";
import { evolve } from "../../shared/domain/session.ts";

const A = "+12025550101" as E164;
const PREFIX_OF_A = "+1202555010";
const P1 = "+14155550101" as E164;
const ANON = `anon:${"a".repeat(43)}`;
const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const ctx = () => ({ now: T0, newId: () => "evt_1", quarantineSeconds: 60 });
const AT = "2026-02-01T00:00:00.000Z";

describe("pseudonyms", () => {
  test("a pseudonym is anon: and 43 base64url characters; it never validates as E.164", async () => {
    const pseudonyms = new KeyedPseudonyms(async () => "k".repeat(32));
    const p = await pseudonyms.pseudonymOf(A);
    assert.match(p, PSEUDONYM_PATTERN);
    assert.equal(await pseudonyms.pseudonymOf(A), p, "stable for the same key");
    assert.notEqual(await new KeyedPseudonyms(async () => Buffer.alloc(32)).pseudonymOf(A), p);
    assert.equal(toE164(p), undefined);
    assert.equal(isPseudonym(p), true);
    assert.equal(isPseudonym(A), false);
    assert.equal(isPseudonym(undefined), false);
  });
  test("a key that fails to load is read again next time", async () => {
    let calls = 0;
    const pseudonyms = new KeyedPseudonyms(async () => {
      calls++;
      if (calls === 1) throw new Error("secret store down");
      return "k".repeat(32);
    });
    await assert.rejects(pseudonyms.pseudonymOf(A), /secret store down/);
    assert.match(await pseudonyms.pseudonymOf(A), PSEUDONYM_PATTERN);
  });
  test("consent: the latest record wins, under the number or the pseudonym", () => {
    const out = { phoneNumber: ANON, optedOut: true, changedAt: "2026-01-01T00:00:00.000Z" };
    const back = { phoneNumber: A, optedOut: false, changedAt: "2026-01-02T00:00:00.000Z" };
    assert.equal(latestConsent(undefined, undefined), undefined);
    assert.equal(latestConsent(out, undefined), out);
    assert.equal(latestConsent(undefined, out), out);
    assert.equal(latestConsent(out, back), back);
    assert.equal(latestConsent(back, out), back);
    assert.equal(latestConsent({ ...back, changedAt: null }, out), out);
    assert.equal(latestConsent(out, { ...back, changedAt: null }), out);
  });
});

describe("erasure of an item", () => {
  test("the number becomes the pseudonym at any depth, only as a whole number", () => {
    assert.deepEqual(
      rewriteValue({ a: [`PARTICIPANT#${A}`, { b: A }], n: 3, z: null, other: `${A}9` }, A, ANON),
      { a: [`PARTICIPANT#${ANON}`, { b: ANON }], n: 3, z: null, other: `${A}9` },
    );
    assert.equal(rewriteValue(A, PREFIX_OF_A, ANON), A, "a number is not part of a longer one");
  });
  test("nothing of the person: nothing to do", () => {
    assert.equal(eraseItem({ pk: "POOL", sk: `NUMBER#${P1}`, kind: "number" }, A, ANON, AT), undefined);
  });
  test("an event in place keeps its key and is marked erased", () => {
    const erased = eraseItem(
      { pk: "SESSION#s1", sk: "EVENT#x", kind: "event", id: "e1", detail: { from: A } },
      A,
      ANON,
      AT,
    );
    assert.deepEqual(erased, {
      event: true,
      message: false,
      changes: [
        {
          type: "put",
          key: { pk: "SESSION#s1", sk: "EVENT#x" },
          item: { kind: "event", id: "e1", detail: { from: ANON }, erasedAt: AT },
          conflict: { kind: "erasure", key: "SESSION#s1" },
        },
      ],
    });
  });
  test("an item keyed by the number moves: delete and put together", () => {
    const erased = eraseItem(
      { pk: `PERSON#${A}`, sk: "CONSENT", kind: "consent", phoneNumber: A },
      A,
      ANON,
      AT,
    );
    assert.deepEqual(
      erased?.changes.map((c) => [c.type, c.key.pk]),
      [
        ["delete", `PERSON#${A}`],
        ["put", `PERSON#${ANON}`],
      ],
    );
    assert.equal(erased?.event, false);
  });
  test("a consent moving onto the pseudonym's consent: what the person said most recently stays", () => {
    const consent = (pk: string, phoneNumber: string, optedOut: boolean, changedAt: string) => ({
      pk,
      sk: "CONSENT",
      kind: "consent",
      phoneNumber,
      optedOut,
      changedAt,
    });
    const olderOptIn = consent(`PERSON#${A}`, A, false, "2026-01-01T00:00:00.000Z");
    const laterOptOut = consent(`PERSON#${ANON}`, ANON, true, "2026-02-01T00:00:00.000Z");
    const kept = eraseItem(olderOptIn, A, ANON, AT, laterOptOut);
    assert.deepEqual(
      kept?.changes.map((c) => [c.type, c.key.pk]),
      [["delete", `PERSON#${A}`]],
      "the later opt-out under the pseudonym is not replaced",
    );
    const newer = consent(`PERSON#${A}`, A, false, "2026-03-01T00:00:00.000Z");
    assert.deepEqual(
      eraseItem(newer, A, ANON, AT, laterOptOut)?.changes.map((c) => [c.type, c.key.pk]),
      [
        ["delete", `PERSON#${A}`],
        ["put", `PERSON#${ANON}`],
      ],
      "a later word under the number replaces the older one",
    );
    // Only a consent is merged: another item moving onto an occupied key replaces it.
    const other = { pk: `HUB#${A}`, sk: "NUMBER", kind: "hub-number", participantNumber: A };
    assert.equal(eraseItem(other, A, ANON, AT, laterOptOut)?.changes.length, 2);
  });
  test("a message the person sent or received loses its body and media; one that only mentions them keeps it", () => {
    const message = { pk: "MESSAGE#m", sk: "MESSAGE", kind: "message", from: A, recipient: "+12025550102" };
    const theirs = eraseItem({ ...message, body: "hi", mediaUrls: [] }, A, ANON, AT);
    assert.deepEqual(theirs?.changes[0]?.type === "put" && theirs.changes[0].item.body, "");
    assert.equal(theirs?.message, true);
    assert.equal(theirs?.changes[0]?.type === "put" && theirs.changes[0].item.erasedAt, AT);
    const media = eraseItem({ ...message, from: ANON, body: "", mediaUrls: ["https://m"] }, A, ANON, AT);
    assert.deepEqual(media?.changes[0]?.type === "put" && media.changes[0].item.mediaUrls, []);
    assert.equal(eraseItem({ ...message, from: ANON, body: "", mediaUrls: [] }, A, ANON, AT), undefined);
    assert.equal(eraseItem({ ...message, from: ANON, body: "" }, A, ANON, AT), undefined);
    const mention = eraseItem(
      { ...message, from: "+12025550103", body: `call ${A}`, mediaUrls: [] },
      A,
      ANON,
      AT,
    );
    assert.deepEqual(mention?.changes[0]?.type === "put" && mention.changes[0].item.body, `call ${ANON}`);
    assert.equal(mention?.changes[0]?.type === "put" && mention.changes[0].item.erasedAt, undefined);
  });
});

describe("pseudonyms in events", () => {
  const sms = (route: "in" | "out", body: string, senderPseudonym?: string): MessageCommand => ({
    type: "ReceiveSms",
    messageId: "SM1",
    from: A,
    to: P1,
    route:
      route === "in"
        ? { kind: "in-session", sessionId: "s1", recipient: A, recipientProxy: P1, contacts: undefined }
        : { kind: "out-of-session", sessionId: null, reason: "no-session" },
    bodyLength: body.length,
    numMedia: 0,
    keyword: body === "STOP" ? { kind: "opt-out", word: "STOP" } : undefined,
    replying: false,
    rateLimited: false,
    contacts: { found: [], policy: "allow" },
    senderPseudonym,
  });
  test("a stranger's text, call and opt-out carry the pseudonym; a participant's opt-out in session the number", () => {
    const [text] = decideMessage(sms("out", "hi", ANON), null, ctx());
    assert.equal(text?.type === "OutOfSessionMessage" && text.detail.from, ANON);
    const [call] = decideMessage(
      {
        type: "ReceiveCall",
        callSid: "CA1",
        from: A,
        to: P1,
        route: { kind: "out-of-session", sessionId: null, reason: "no-session" },
        senderPseudonym: ANON,
      },
      null,
      ctx(),
    );
    assert.equal(call?.type === "OutOfSessionMessage" && call.detail.from, ANON);
    const [, strangerStop] = decideMessage(sms("out", "STOP", ANON), null, ctx());
    assert.equal(strangerStop?.type === "ParticipantOptedOut" && strangerStop.detail.phoneNumber, ANON);
    const [, noPseudonym] = decideMessage(sms("out", "STOP"), null, ctx());
    assert.equal(noPseudonym?.type === "ParticipantOptedOut" && noPseudonym.detail.phoneNumber, A);
    const [, participantStop] = decideMessage(sms("in", "STOP", ANON), null, ctx());
    assert.equal(participantStop?.type === "ParticipantOptedOut" && participantStop.detail.phoneNumber, A);
  });
  test("ParticipantErased: under the pseudonym's partition, no projection, no session change, no number", () => {
    const event = makeEvent(ctx(), "ParticipantErased", null, {
      pseudonym: ANON,
      sessionIds: ["s1"],
      events: 3,
      messages: 1,
    });
    assert.equal(eventPartition(event), `PERSON#${ANON}`);
    assert.deepEqual(
      projectEvents([event], { retentionSeconds: 60 }).map((c) => c.key.pk),
      [`PERSON#${ANON}`],
    );
    assert.equal(evolve(null, event), null);
    assert.equal(domainEventSchema.safeParse(event).success, true);
    const bad = { ...event, detail: { ...event.detail, pseudonym: A } };
    assert.equal(domainEventSchema.safeParse(bad).success, false);
  });
  test("people's numbers in events may be pseudonyms; proxies may not", () => {
    const released = makeEvent(ctx(), "PairReleased", "s1", {
      proxyNumber: P1,
      participantNumber: ANON,
      counterpartNumber: A,
      quarantineUntil: AT,
    });
    assert.equal(domainEventSchema.safeParse(released).success, true);
    const short = { ...released, detail: { ...released.detail, participantNumber: "anon:short" } };
    assert.equal(domainEventSchema.safeParse(short).success, false);
    const proxy = { ...released, detail: { ...released.detail, proxyNumber: ANON } };
    assert.equal(domainEventSchema.safeParse(proxy).success, false);
  });
});

describe("DynamoStore.rewrite under a transaction holding the item (fault injection)", () => {
  test("a single-item write refused with TransactionConflictException is sent again, not dropped", async () => {
    const sent: string[] = [];
    const conflict = { kind: "session", key: "s" } as const;
    let refusals = 2;
    const client = {
      send: async (command: { constructor: { name: string } }) => {
        sent.push(command.constructor.name);
        if (refusals-- > 0)
          throw new TransactionConflictException({
            message: "Transaction is ongoing for the item",
            $metadata: {},
          });
        return {};
      },
    };
    const store = new DynamoStore({ tableName: "t", client: client as never, retentionSeconds: 60 });
    await store.rewrite([
      [{ type: "update", key: { pk: "SESSION#s", sk: "EVENT#1" }, set: { ttl: 1 }, conflict }],
    ]);
    assert.deepEqual(sent, ["UpdateCommand", "UpdateCommand", "UpdateCommand"]);
    // Any other error is not a conflict: it is thrown at once.
    const failing = { send: async () => Promise.reject(new Error("boom")) };
    const other = new DynamoStore({ tableName: "t", client: failing as never, retentionSeconds: 60 });
    await assert.rejects(
      other.rewrite([[{ type: "put", key: { pk: "a", sk: "b" }, item: {}, conflict }]]),
      /boom/,
    );
  });
});

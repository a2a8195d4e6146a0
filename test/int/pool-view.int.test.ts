import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { ParticipantIsPoolNumberError } from "../../shared/domain/errors.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { startLocalAws } from "../support/stack.ts";

const number = (n: number) => `+1415555${String(1000 + n).padStart(4, "0")}` as E164;
const guest = (n: number) => `+1202555${String(1000 + n).padStart(4, "0")}` as E164;
const HOST = "+12125550100" as E164;

let aws: Awaited<ReturnType<typeof startLocalAws>>;

/** The store, counting what allocation reads and how many transactions it sends. */
function counted(store: DynamoStore) {
  const counts = { listPool: 0, appends: 0 };
  const wrapped = Object.assign(Object.create(store) as DynamoStore, {
    listPool: () => {
      counts.listPool++;
      return store.listPool();
    },
    append: (...args: Parameters<DynamoStore["append"]>) => {
      counts.appends++;
      return store.append(...args);
    },
  });
  return { store: wrapped, counts };
}

function service(store: DynamoStore) {
  return new SessionService({
    store,
    queue: { enqueue: async () => {} },
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
  });
}

const open = (s: SessionService, a: E164, b: E164) =>
  s.openSession({
    participants: [{ phoneNumber: a }, { phoneNumber: b }],
    mode: "sms",
    ttlSeconds: 600,
    ttlMode: "absolute",
  });

describe("allocation on a cached pool view (DynamoDB Local)", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("opens do not read the pool each time; a participant that is one of our numbers is still refused", async () => {
    const { store } = await aws.fresh();
    const { store: reads, counts } = counted(store);
    const s = service(reads);
    for (let i = 0; i < 4; i++) await s.addNumber(number(i));
    counts.listPool = 0;
    for (let i = 0; i < 5; i++) await open(s, guest(2 * i), guest(2 * i + 1));
    assert.equal(counts.listPool, 1, "one pool read for five opens");
    await assert.rejects(open(s, number(2), guest(99)), ParticipantIsPoolNumberError);
    await assert.rejects(open(s, guest(98), number(3)), ParticipantIsPoolNumberError);
  });

  test("concurrent opens for one participant in one container take different numbers, one transaction each", async () => {
    const { store } = await aws.fresh();
    const { store: writes, counts } = counted(store);
    const s = service(writes);
    for (let i = 0; i < 10; i++) await s.addNumber(number(i));
    counts.appends = 0;
    const sessions = await Promise.all(Array.from({ length: 10 }, (_, i) => open(s, HOST, guest(i))));
    const hostProxies = sessions.map(({ session }) => session.participants[0].proxyNumber);
    assert.equal(new Set(hostProxies).size, 10, "the host holds ten different numbers");
    assert.equal(counts.appends, 10, "no transaction lost a race");
  });

  test("another container's changes: a drained number is never given, a new number is found when the view lacks it", async () => {
    const { store } = await aws.fresh();
    const mine = service(store);
    const other = service(store);
    await other.addNumber(number(0));
    await other.addNumber(number(1));
    // Read the view (two numbers), then another container drains one and adds another.
    const first = await open(mine, HOST, guest(0));
    const taken = first.session.participants[0].proxyNumber;
    const free = taken === number(0) ? number(1) : number(0);
    await open(other, guest(50), free === number(0) ? guest(51) : guest(52));
    const retired = await other.retireNumber(free);
    assert.equal(retired.status, "draining");
    await other.addNumber(number(2));
    // The host holds `taken`; `free` is draining, so only number 2 (unknown to this view) is left for it.
    const second = await open(mine, HOST, guest(1));
    assert.equal(second.session.participants[0].proxyNumber, number(2));
  });
  test("failOnParticipantConflict sees a session this container opened while its holdings were being read", async () => {
    const { store } = await aws.fresh();
    let hostReads = 0;
    let firstDone: Promise<unknown> = Promise.resolve();
    // The second open's read of HOST's pairs is held until the first open has landed: it then shows the pair.
    const gated = Object.assign(Object.create(store) as DynamoStore, {
      holdingsOf: async (p: E164) => {
        if (p === HOST && ++hostReads > 1) await firstDone.catch(() => {});
        return store.holdingsOf(p);
      },
    });
    const s = service(gated);
    for (let i = 0; i < 3; i++) await s.addNumber(number(i));
    const first = open(s, HOST, guest(1));
    firstDone = first;
    const second = s
      .openSession({
        participants: [{ phoneNumber: HOST }, { phoneNumber: guest(1) }],
        mode: "sms",
        ttlSeconds: 600,
        ttlMode: "absolute",
        failOnParticipantConflict: true,
      })
      .then(
        () => "opened",
        (error: Error) => error.name,
      );
    const { session } = await first;
    assert.equal(
      await second,
      "ParticipantConflictError",
      `a second session with ${session.sessionId}'s pair`,
    );
  });
});

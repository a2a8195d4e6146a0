import assert from "node:assert/strict";
import { test } from "node:test";
import { EventPublisher, type StreamedEvent } from "../../shared/app/publisher.ts";
import type { DomainEvent } from "../../shared/domain/events.ts";
import type { ForwardJob } from "../../shared/ports.ts";

const received = (n: number): StreamedEvent => ({
  sequenceNumber: `seq${n}`,
  event: {
    id: `evt${n}`,
    type: "MessageReceived",
    occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    sessionId: `ses${n % 3}`,
    detailVersion: 1,
    detail: {
      messageId: `SM${n}`,
      source: "sms",
      from: "+12025550101",
      to: "+12025550102",
      proxyNumber: "+14155550100",
      bodyLength: 5,
      numMedia: 0,
    },
  } as DomainEvent,
});

const closed = (n: number): StreamedEvent => ({
  sequenceNumber: `seq${n}`,
  event: {
    id: `evt${n}`,
    type: "SessionClosed",
    occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    sessionId: "ses0",
    detailVersion: 1,
    detail: { reason: "api" },
  } as DomainEvent,
});

test("the outbox hands a batch's received messages to the queue in one call, in stream order; a refused one fails its record", async () => {
  const calls: ForwardJob[][] = [];
  const published: DomainEvent[] = [];
  const publisher = new EventPublisher({
    bus: {
      limits: { entries: 10, bytes: 256 * 1024 },
      sizeOf: () => 100,
      publish: async (events) => {
        published.push(...events);
        return [];
      },
    },
    queue: {
      enqueueAll: async (jobs) => {
        calls.push([...jobs]);
        return [1]; // the second job
      },
    },
    retries: 0,
  });
  const records = [received(1), closed(2), received(3), received(4)];
  const failed = await publisher.publish(records);
  assert.deepEqual(calls, [
    [
      { messageId: "SM1", sessionId: "ses1" },
      { messageId: "SM3", sessionId: "ses0" },
      { messageId: "SM4", sessionId: "ses1" },
    ],
  ]);
  assert.deepEqual(failed, ["seq3"], "the record of the refused job is reported, and only it");
  assert.equal(published.length, 4, "every event is still published");
});

test("a batch with no received message does not call the queue", async () => {
  let called = false;
  const publisher = new EventPublisher({
    bus: { limits: { entries: 10, bytes: 256 * 1024 }, sizeOf: () => 100, publish: async () => [] },
    queue: {
      enqueueAll: async () => {
        called = true;
        return [];
      },
    },
    retries: 0,
  });
  assert.deepEqual(await publisher.publish([closed(1)]), []);
  assert.equal(called, false);
});

test("a call carries one event per session and stays within the bus's limits; later events of a session follow in order", async () => {
  const calls: string[][] = [];
  const publisher = new EventPublisher({
    bus: {
      limits: { entries: 3, bytes: 250 },
      sizeOf: (event) => (event.id === "evt9" ? 200 : 100),
      publish: async (events) => {
        calls.push(events.map((e) => e.id));
        return [];
      },
    },
    queue: { enqueueAll: async () => [] },
    retries: 0,
  });
  // Sessions: seq1 ses1, seq2 ses2, seq4 ses1, seq5 ses2, seq9 ses0 (the large one), seq6 ses0.
  const records = [received(1), received(2), received(4), received(5), received(9), received(6)];
  assert.deepEqual(await publisher.publish(records), []);
  assert.deepEqual(calls, [["evt1", "evt2"], ["evt4", "evt5"], ["evt9"], ["evt6"]]);
  assert.equal(publisher.tooLarge(received(9).event), false);
});

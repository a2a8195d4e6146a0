import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DeleteCommand, DynamoDBDocumentClient, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type LocalService,
  provisionTable,
  startDynamoLocal,
} from "../../local/aws-local.ts";
import { rebuildTable, scanTable } from "../../scripts/rebuild-lib.ts";
import { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { ForwardService } from "../../shared/app/forward.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { itemKeys } from "../../shared/domain/projection.ts";
import { type ForwardJob, type SmsGateway, SmsSendError } from "../../shared/ports.ts";
import { compareProjections, describeDifference } from "../../shared/rebuild.ts";
import { testReplies, testTraffic } from "../support/pipeline.ts";
import { runRebuildCli } from "../support/rebuild-cli.ts";

const TABLE = "maskline";
const RETENTION_HOURS = 72;
const A = "+12025550401" as E164;
const B = "+12025550402" as E164;
const C = "+12025550403" as E164;
const STRANGER = "+12025550499" as E164;
const NUMBERS = ["+12025550911", "+12025550912", "+12025550913"] as E164[];
const LATE_NUMBER = "+12025550914" as E164;

/** The CLI as an operator runs it (`npm run rebuild -- …`), in its own process. */
const runCli = (args: string[]) =>
  runRebuildCli(args, { MESSAGE_RETENTION_HOURS: String(RETENTION_HOURS), TABLE_NAME: TABLE });

function clients(dynamo: LocalService) {
  const client = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  return { client, doc };
}

/** Twilio, as a unit double: accepts every send except to `failing`, which it rejects permanently. */
function fakeGateway(failing: Set<string>) {
  let n = 0;
  const gateway: SmsGateway = {
    send: async (message) => {
      if (failing.has(message.to)) throw new SmsSendError("permanent", 400, "21610", null);
      return { sid: `SM${String(++n).padStart(32, "0")}` };
    },
    findSent: async () => undefined,
  };
  return gateway;
}

/** Drives the real services on the table: every event type that defines a projection, and a claim. */
async function driveServices(store: DynamoStore) {
  const jobs: ForwardJob[] = [];
  const failing = new Set<string>();
  const common = {
    store,
    queue: { enqueue: async (job: ForwardJob) => void jobs.push(job) },
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
  };
  const sessions = new SessionService(common);
  const inbound = new InboundService({
    ...common,
    ...testReplies,
    traffic: testTraffic({ autoReplyIntervalSeconds: 3600 }),
  });
  const forward = new ForwardService({
    ...common,
    gateway: fakeGateway(failing),
    statusCallbackUrl: () => undefined,
    claimStaleMs: 30_000,
    maxInlineRetries: 0,
  });
  const recycler = new RecyclerService({
    ...common,
    metrics: { poolHealth: () => {} },
    poolLowHeadroom: 1,
    topUp: undefined,
  });
  const forwardNext = async () => {
    const job = jobs.shift();
    assert.ok(job, "a job was enqueued");
    return forward.forward(job);
  };
  const sidOf = async (messageId: string) => (await store.getMessage(messageId))?.twilioSid ?? "";

  for (const n of NUMBERS) await sessions.addNumber(n);
  const { session: s1 } = await sessions.openSession({
    participants: [{ phoneNumber: A }, { phoneNumber: B, id: "guest-1", name: "Bo" }],
    mode: "sms+voice",
    ttlSeconds: 3600,
    ttlMode: "sliding",
  });
  const { session: s2 } = await sessions.openSession({
    participants: [{ phoneNumber: A }, { phoneNumber: C }],
    mode: "sms",
    ttlSeconds: 1,
    ttlMode: "absolute",
  });
  const [pa, pb] = s1.participants;

  // Platform message → forwarded (sliding extension) → delivered.
  const platform = await sessions.sendPlatformMessage(s1.sessionId, {
    to: B,
    body: "Your host is on the way",
  });
  assert.equal(await forwardNext(), "forwarded");
  await inbound.recordStatus({
    messageId: platform.messageId,
    twilioSid: await sidOf(platform.messageId),
    status: "delivered",
    errorCode: undefined,
  });
  // Inbound text → forwarded → undelivered.
  await inbound.receiveSms({
    messageSid: `SM${"1".repeat(32)}`,
    from: A,
    to: pa.proxyNumber as E164,
    body: "See you at 6",
    mediaUrls: [],
    optOutType: undefined,
  });
  assert.equal(await forwardNext(), "forwarded");
  await inbound.recordStatus({
    messageId: `SM${"1".repeat(32)}`,
    twilioSid: await sidOf(`SM${"1".repeat(32)}`),
    status: "undelivered",
    errorCode: "30003",
  });
  // Opt-out keyword (blocked), a stranger (out of session), a bridged call.
  await inbound.receiveSms({
    messageSid: `SM${"2".repeat(32)}`,
    from: A,
    to: pa.proxyNumber as E164,
    body: "STOP",
    mediaUrls: [],
    optOutType: "STOP",
  });
  await inbound.receiveSms({
    messageSid: `SM${"3".repeat(32)}`,
    from: STRANGER,
    to: pa.proxyNumber as E164,
    body: "hello?",
    mediaUrls: [],
    optOutType: undefined,
  });
  assert.equal(
    (await inbound.receiveCall({ callSid: `CA${"4".repeat(32)}`, from: B, to: pb.proxyNumber as E164 })).kind,
    "dial",
  );
  // A send Twilio rejects (failed), and one still queued when its session ends.
  failing.add(B);
  await sessions.sendPlatformMessage(s1.sessionId, { to: B, body: "Rejected by the carrier" });
  assert.equal(await forwardNext(), "failed");
  failing.clear();
  // A message left claimed (state sending): out of scope, it compares as received.
  await sessions.sendPlatformMessage(s1.sessionId, { to: B, body: "Claimed, never sent" });
  const claimed = jobs.shift();
  assert.ok(claimed);
  assert.equal(await store.claimSend(claimed.messageId, Date.now(), 0), "claimed");
  await sessions.sendPlatformMessage(s1.sessionId, { to: B, body: "Too late" });

  // Retire a held number (draining), close the session, expire the other: the recycler retires it.
  assert.equal((await sessions.retireNumber(pa.proxyNumber as E164)).status, "draining");
  await sessions.closeSession(s1.sessionId);
  // Accepted while the session was open, forwarded after it closed (or blocked): either is in the events.
  assert.match(await forwardNext(), /^(forwarded|blocked)$/);
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(s2.expiresAt) - Date.now() + 50)));
  const report = await recycler.run({ budgetMs: 5000, batchSize: 10 });
  assert.equal(report.expired, 1);
  assert.equal(
    (await store.listPool()).some((n) => n.phoneNumber === pa.proxyNumber),
    false,
    "drained, retired",
  );
  // A number added and retired at once.
  await sessions.addNumber(LATE_NUMBER);
  assert.equal((await sessions.retireNumber(LATE_NUMBER)).status, "retired");
  return { s1, s2 };
}

describe("rebuild: the table's projections from its events", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "maskline-rebuild-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("a table written by the services rebuilds to its own projections; one tampered item is one difference", async () => {
    const retentionSeconds = RETENTION_HOURS * 3600;
    let dynamo = await startDynamoLocal({ dataDir: dir });
    let open = clients(dynamo);
    try {
      await provisionTable(dynamo.endpoint, TABLE);
      const store = new DynamoStore({ tableName: TABLE, client: open.doc, retentionSeconds });
      const { s1 } = await driveServices(store);

      const clean = await rebuildTable({ ...open, tableName: TABLE, retentionSeconds });
      assert.deepEqual(clean.differences.map(describeDifference), []);
      for (const [kind, c] of Object.entries(clean.counts)) assert.equal(c.rebuilt, c.live, kind);
      assert.equal(clean.counts.session.live, 2);
      assert.equal(clean.counts.pair.live, 4);
      assert.equal(clean.counts.number.live, 2, "two of four numbers retired");
      assert.equal(clean.counts.message.live, 7);
      assert.equal(clean.counts.call.live, 1);
      // Written into a new table, the rebuild is the same projections, and every event.
      const target = `${TABLE}-rebuilt-test`;
      const written = await rebuildTable({ ...open, tableName: TABLE, retentionSeconds, target });
      assert.equal(written.target, target);
      const [live, rebuilt] = await Promise.all([scanTable(open.doc, TABLE), scanTable(open.doc, target)]);
      const copy = compareProjections(live, rebuilt, { now: Date.now() });
      assert.deepEqual(copy.differences.map(describeDifference), []);
      const events = (items: typeof live) => items.filter((i) => i.kind === "event").length;
      assert.equal(events(rebuilt), events(live));
      open.client.destroy();
      await dynamo.stop();

      // The CLI against the data directory (DynamoDB Local stopped, as `npm start` would be).
      const check = await runCli(["--data-dir", dir, "--check"]);
      assert.equal(check.code, 0, check.output);
      assert.match(check.output, /^0 differences$/m);

      dynamo = await startDynamoLocal({ dataDir: dir });
      open = clients(dynamo);
      // Tamper with one live item: exactly one difference, named by key and field.
      await open.doc.send(
        new UpdateCommand({
          TableName: TABLE,
          Key: itemKeys.session(s1.sessionId),
          UpdateExpression: "SET #s = :open",
          ExpressionAttributeNames: { "#s": "status" },
          ExpressionAttributeValues: { ":open": "open" },
        }),
      );
      const tampered = await rebuildTable({ ...open, tableName: TABLE, retentionSeconds });
      assert.deepEqual(tampered.differences, [
        { type: "fields", kind: "session", key: itemKeys.session(s1.sessionId), fields: ["status"] },
      ]);
      // The CLI as against a deployed table: an endpoint, the default credential chain, no DynamoDB Local.
      const failed = await runCli(["--endpoint", dynamo.endpoint, "--region", LOCAL_REGION, "--check"]);
      assert.equal(failed.code, 1, failed.output);
      assert.match(failed.output, /^1 difference$/m);
      assert.match(failed.output, new RegExp(`session SESSION#${s1.sessionId} META: fields differ: status`));
      for (const number of [A, B, C, STRANGER, ...NUMBERS])
        assert.equal(failed.output.includes(number), false, "no phone number in the output");

      // A lost event: the history no longer explains a later one, whose guard fails in the fold.
      const added = (await scanTable(open.doc, TABLE)).find(
        (i) =>
          i.kind === "event" &&
          i.type === "NumberAdded" &&
          (i.detail as { phoneNumber?: string }).phoneNumber === LATE_NUMBER,
      );
      assert.ok(added);
      await open.doc.send(new DeleteCommand({ TableName: TABLE, Key: { pk: added.pk, sk: added.sk } }));
      const lost = await rebuildTable({ ...open, tableName: TABLE, retentionSeconds });
      assert.deepEqual(
        lost.differences.map((d) => d.type),
        ["guard-failed", "fields"],
      );
      const [guardFailed] = lost.differences;
      assert.ok(guardFailed);
      assert.match(describeDifference(guardFailed), /\(NumberRetired\): guard failed on number \+12\*+14$/);
    } finally {
      open.client.destroy();
      await dynamo.stop();
    }
  });
});

test("a capped participant's slot items (kind cap-slot) are a projection: a live one the events do not make is a difference", () => {
  const slot = {
    pk: "PERSON#+12025550100",
    sk: "PROXYSLOT#0",
    kind: "cap-slot",
    phoneNumber: "+12025550100",
    slot: 0,
    sessionId: "ses_x",
    proxyNumber: "+14155550100",
  };
  const result = compareProjections([slot], [], { now: Date.now() });
  assert.deepEqual(result.counts["cap-slot"], { live: 1, rebuilt: 0 });
  assert.deepEqual(result.differences.map(describeDifference), [
    "cap-slot PERSON#+12*******00 PROXYSLOT#0: in the table, not defined by the events",
  ]);
});

test("rebuild refuses a data directory a running npm start holds (exit 2, naming the pid)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "maskline-rebuild-lock-"));
  try {
    await writeFile(join(dir, "maskline.lock"), String(process.pid));
    const result = await runCli(["--data-dir", dir, "--check"]);
    assert.equal(result.code, 2, result.output);
    assert.match(result.output, new RegExp(`in use by npm start \\(pid ${process.pid}\\): stop it first`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

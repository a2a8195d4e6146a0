import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { runCli } from "../../cli/main.ts";
import {
  InvalidCursorError,
  MasklineClient,
  NotFoundError,
  PoolExhaustedError,
  SessionNotOpenError,
  UnauthorizedError,
  UniqueNameTakenError,
  ValidationError,
} from "../../clients/typescript/src/index.ts";
import { type EmbeddedStack, startEmbeddedStack } from "../../local/stack.ts";
import { assertMatchesOpenApi } from "../support/openapi.ts";

let stack: EmbeddedStack;
let client: MasklineClient;
const guest = (n: number) => `+1202555${String(2000 + n).padStart(4, "0")}`;
const collect = async <T>(items: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
};

describe("TypeScript client against the embedded stack (in-process)", () => {
  before(async () => {
    stack = await startEmbeddedStack({ PORT: "0", SANDBOX_POOL_SIZE: "3", RECYCLER_INTERVAL_SECONDS: "60" });
    client = new MasklineClient({
      endpoint: stack.url,
      auth: { type: "bearer", token: stack.apiToken },
      // Every answer the client gets here is checked against the OpenAPI document.
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        const request = input as Request;
        assertMatchesOpenApi(request.method, new URL(request.url).pathname, {
          status: response.status,
          headers: Object.fromEntries(response.headers),
          text: await response.clone().text(),
        });
        return response;
      },
    });
  });
  after(async () => stack?.stop());

  test("health, the OpenAPI document, the pool a page at a time", async () => {
    assert.equal((await client.health()).status, "ok");
    assert.equal((await client.openapi()).openapi, "3.1.0");
    const added = await client.numbers.add("+14155557000");
    assert.equal(added.status, "active");
    const all = await collect(client.numbers.listAll({ limit: 2 }));
    assert.equal(all.length, 4, "three sandbox numbers and the one added, over two pages");
    const retired = await client.numbers.retire("+14155557000");
    assert.equal(retired.status, "retired");
  });

  test("a create retried after a lost response opens one session (automatic Idempotency-Key)", async () => {
    let dropped = 0;
    const flaky = new MasklineClient({
      endpoint: stack.url,
      auth: { type: "bearer", token: stack.apiToken },
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (dropped++ === 0) throw new TypeError("fetch failed (the response was lost)");
        return response;
      },
    });
    const session = await flaky.sessions.open({
      participants: [{ phoneNumber: guest(1), id: "host-1" }, { phoneNumber: guest(2) }],
    });
    assert.equal(session.status, "open");
    const sessions = await collect(client.sessions.listAll({ participant: "host-1" }));
    assert.deepEqual(
      sessions.map((s) => s.sessionId),
      [session.sessionId],
      "the retry replayed the first answer",
    );
  });

  test("typed errors and paged lookups", async () => {
    const opened = await client.sessions.open({
      participants: [{ phoneNumber: guest(10), id: "host-10" }, { phoneNumber: guest(11) }],
      uniqueName: "client-booking",
    });
    await assert.rejects(
      client.sessions.open({
        participants: [{ phoneNumber: guest(12) }, { phoneNumber: guest(13) }],
        uniqueName: "client-booking",
      }),
      (e: unknown) =>
        e instanceof UniqueNameTakenError && e.status === 409 && e.uniqueName === "client-booking",
    );
    const found = await client.sessions.list({ uniqueName: "client-booking", status: "open" });
    assert.deepEqual(
      found.items.map((s) => s.sessionId),
      [opened.sessionId],
    );
    assert.equal(found.nextCursor, undefined);

    const patched = await client.sessions.update(opened.sessionId, { ttlSeconds: 3600, mode: "sms" });
    assert.equal(patched.mode, "sms");

    await client.sessions.sendMessage(opened.sessionId, { to: "host-10", body: "welcome" });
    // The guest texts the host through the sandbox: webhook, queue, forward, all of the embedded stack.
    const guestProxy = patched.participants[1].proxyNumber;
    await stack.sandbox.phoneSends(guest(11), guestProxy, "hi host");
    let messages = await collect(client.sessions.allMessages(opened.sessionId));
    for (let i = 0; i < 100 && messages.some((m) => m.forwardedAt === null); i++) {
      await new Promise((r) => setTimeout(r, 100));
      messages = await collect(client.sessions.allMessages(opened.sessionId));
    }
    assert.deepEqual(
      messages.map((m) => [m.from, m.to, m.body]),
      [
        [null, "host-10", "welcome"],
        [guest(11), "host-10", "hi host"],
      ],
      "participants by id when they have one, else by number",
    );
    // Forwarded, then the carrier's status callbacks (the sandbox reports sent/delivered).
    for (const m of messages) assert.ok(["forwarded", "sent", "delivered"].includes(m.status), m.status);
    for (const m of messages) assert.ok(m.forwardedAt && m.forwardedAt >= m.receivedAt);
    const events = await collect(client.sessions.allEvents(opened.sessionId, { limit: 1 }));
    assert.deepEqual(
      events
        .map((e) => e.type)
        // Extensions and delivery callbacks depend on timing; the rest is fixed.
        .filter((t) => t !== "SessionExtended" && t !== "MessageDelivered")
        .sort(),
      [
        "MessageForwarded",
        "MessageForwarded",
        "MessageReceived",
        "MessageReceived",
        "SessionOpened",
        "SessionUpdated",
      ],
      "every event once, over pages of one",
    );
    assert.equal(events[0]?.type, "SessionOpened");
    assert.equal(new Set(events.map((e) => e.id)).size, events.length);

    await client.sessions.close(opened.sessionId);
    await assert.rejects(
      client.sessions.update(opened.sessionId, { mode: "sms" }),
      (error) => error instanceof SessionNotOpenError && error.sessionStatus === "closed",
    );
    await assert.rejects(client.sessions.get("ses_nothere"), NotFoundError);
    await assert.rejects(
      client.sessions.open({ participants: [{ phoneNumber: "12345" }, { phoneNumber: guest(3) }] }),
      (e: unknown) => e instanceof ValidationError && e.errors[0]?.pointer === "/participants/0/phoneNumber",
    );
    await assert.rejects(client.numbers.list({ cursor: "forged.cursor" }), InvalidCursorError);
    const stranger = new MasklineClient({
      endpoint: stack.url,
      auth: { type: "bearer", token: "wrong-token" },
    });
    await assert.rejects(stranger.numbers.list(), UnauthorizedError);

    // A pool of three: the fourth open session of one participant has no number left.
    const busy = guest(50);
    for (let i = 0; i < 3; i++)
      await client.sessions.open({ participants: [{ phoneNumber: busy }, { phoneNumber: guest(60 + i) }] });
    await assert.rejects(
      client.sessions.open({ participants: [{ phoneNumber: busy }, { phoneNumber: guest(70) }] }),
      (e: unknown) => e instanceof PoolExhaustedError && e.participant === busy,
    );
  });

  test("SigV4: requests are signed for execute-api in the endpoint's region", async () => {
    let seen: Request | undefined;
    const signed = new MasklineClient({
      endpoint: "https://abc123.execute-api.eu-west-1.amazonaws.com",
      auth: {
        type: "sigv4",
        credentials: async () => ({
          accessKeyId: "AKIDEXAMPLE",
          secretAccessKey: "secret",
          sessionToken: "tok",
        }),
      },
      fetch: async (input) => {
        seen = input as Request;
        return Response.json({ sessions: [] });
      },
    });
    await signed.sessions.list({ participant: "host-1" });
    const authorization = seen?.headers.get("authorization") ?? "";
    assert.match(
      authorization,
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request/,
    );
    assert.equal(seen?.headers.get("x-amz-security-token"), "tok");
    assert.ok(seen?.headers.get("x-amz-date"));
  });

  test("the client has no Node-only imports (it runs in Deno and edge functions)", () => {
    const dir = "clients/typescript/src";
    for (const file of readdirSync(dir)) {
      const source = readFileSync(`${dir}/${file}`, "utf8");
      const imports = [...source.matchAll(/from "([^"]+)"/g)].map((m) => m[1] ?? "");
      for (const name of imports)
        assert.ok(name.startsWith("./") || name === "aws4fetch", `${file} imports ${name}`);
      assert.doesNotMatch(source, /\b(Buffer|process|require)\b/, file);
    }
  });

  describe("operator CLI (maskline …) on the client", () => {
    const cli = async (...argv: string[]) => {
      let out = "";
      let err = "";
      let polls = 0;
      const code = await runCli(argv, {
        out: (t) => {
          out += t;
        },
        err: (t) => {
          err += t;
        },
        env: { MASKLINE_ENDPOINT: stack.url, MASKLINE_API_TOKEN: stack.apiToken },
        // events tail --follow: poll twice, then stop.
        sleep: async () => ++polls < 2,
      });
      return { code, out, err };
    };

    test("numbers add (several at once), list, retire", async () => {
      const added = await cli("numbers", "add", "+14155557100", "+14155557101");
      assert.equal(added.code, 0, added.err);
      assert.equal((added.out.match(/"status": "active"/g) ?? []).length, 2);
      const listed = await cli("numbers", "list", "--all", "--limit", "2");
      assert.equal(listed.code, 0, listed.err);
      const numbers = JSON.parse(listed.out).numbers.map((n: { phoneNumber: string }) => n.phoneNumber);
      assert.ok(numbers.includes("+14155557100") && numbers.includes("+14155557101"));
      const page = JSON.parse((await cli("numbers", "list", "--limit", "1")).out);
      assert.equal(page.numbers.length, 1);
      assert.ok(page.nextCursor);
      const retired = await cli("numbers", "retire", "+14155557101");
      assert.equal(JSON.parse(retired.out).status, "retired");
    });

    test("sessions open, get, list, close; events tail; errors and usage", async () => {
      const opened = await cli(
        "sessions",
        "open",
        "--a",
        `${guest(80)}=host-80`,
        "--b",
        guest(81),
        "--unique-name",
        "cli-1",
      );
      assert.equal(opened.code, 0, opened.err);
      const session = JSON.parse(opened.out);
      assert.equal(session.uniqueName, "cli-1");
      assert.equal(JSON.parse((await cli("sessions", "get", session.sessionId)).out).status, "open");
      const listed = JSON.parse((await cli("sessions", "list", "--participant", "host-80", "--all")).out);
      assert.deepEqual(
        listed.sessions.map((s: { sessionId: string }) => s.sessionId),
        [session.sessionId],
      );
      const taken = await cli(
        "sessions",
        "open",
        "--a",
        guest(82),
        "--b",
        guest(83),
        "--unique-name",
        "cli-1",
      );
      assert.equal(taken.code, 1);
      assert.match(taken.err, /UniqueNameTakenError \(409 unique-name-taken\)/);
      assert.equal(JSON.parse((await cli("sessions", "close", session.sessionId)).out).status, "closed");
      const tail = await cli("events", "tail", session.sessionId, "--follow", "--interval", "1");
      assert.equal(tail.code, 0, tail.err);
      assert.deepEqual(
        tail.out
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line).type),
        ["SessionOpened", "SessionClosed", "PairReleased", "PairReleased"],
        "each event once, even over several polls",
      );

      for (const argv of [["sessions", "list"], ["sessions", "get"], ["bogus", "thing"], ["--nope"], []]) {
        const res = await cli(...argv);
        assert.equal(res.code, 2, argv.join(" "));
        assert.match(res.err, /Usage: maskline/);
      }
      for (const argv of [
        ["--help"],
        ["numbers", "--help"],
        ["sessions", "open", "--help"],
        ["events", "tail", "-h"],
      ]) {
        const res = await cli(...argv);
        assert.equal(res.code, 0, argv.join(" "));
        assert.match(res.out, /Usage: maskline/);
      }
    });

    test("the bin and npm start print usage with --help", () => {
      const bin = spawnSync(process.execPath, ["bin/maskline.mjs", "sessions", "list", "--help"], {
        encoding: "utf8",
      });
      assert.equal(bin.status, 0, bin.stderr);
      assert.match(bin.stdout, /--participant/);
      const start = spawnSync(process.execPath, ["--import", "tsx", "local/start.ts", "--help"], {
        encoding: "utf8",
      });
      assert.equal(start.status, 0, start.stderr);
      assert.match(start.stdout, /Usage: npm start/);
      const unknown = spawnSync(process.execPath, ["--import", "tsx", "local/start.ts", "--nope"], {
        encoding: "utf8",
      });
      assert.equal(unknown.status, 2);
      assert.match(unknown.stderr, /Usage: npm start/);
      assert.doesNotMatch(unknown.stderr, /ERR_PARSE_ARGS/);
    });
  });
});

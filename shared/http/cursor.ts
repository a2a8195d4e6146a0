import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { PageKey } from "../ports.ts";
import { problems } from "./problem.ts";

const MAX_CURSOR_LENGTH = 2048;

/**
 * Page cursors: opaque to clients and tamper-evident. A cursor is the store's page key as base64url JSON
 * plus an HMAC-SHA256 over it and the query it belongs to (route and filters), so a cursor that was edited,
 * forged without the key, or moved to another query is refused (400 invalid-cursor) before any read.
 */
export class CursorCodec {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = createHash("sha256").update(`maskline-cursor\n${secret}`).digest();
  }

  private mac(scope: string, payload: string): Buffer {
    return createHmac("sha256", this.key).update(`${scope}\n${payload}`).digest();
  }

  seal(scope: string, key: PageKey | undefined): string | undefined {
    if (!key) return undefined;
    const payload = Buffer.from(JSON.stringify(key)).toString("base64url");
    return `${payload}.${this.mac(scope, payload).toString("base64url")}`;
  }

  open(scope: string, cursor: string | undefined): PageKey | undefined {
    if (cursor === undefined) return undefined;
    const [payload, signature, ...rest] = cursor.split(".");
    if (!payload || !signature || rest.length || cursor.length > MAX_CURSOR_LENGTH)
      throw problems.invalidCursor();
    const given = Buffer.from(signature, "base64url");
    const expected = this.mac(scope, payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw problems.invalidCursor();
    let key: unknown;
    try {
      key = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      throw problems.invalidCursor();
    }
    const valid =
      typeof key === "object" &&
      key !== null &&
      !Array.isArray(key) &&
      Object.values(key).every((v) => typeof v === "string" || typeof v === "number");
    if (!valid) throw problems.invalidCursor();
    return key as PageKey;
  }
}

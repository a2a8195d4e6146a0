import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
let lastTime = 0;
let counter = 0;

/**
 * Time-ordered ids ("ses_01h…"): events sort by id within the same millisecond, so a session's history
 * reads back in the order it was written by this process.
 */
export function newId(prefix: string): string {
  const now = Date.now();
  counter = now === lastTime ? counter + 1 : 0;
  lastTime = now;
  let time = "";
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = ALPHABET[t % 32] + time;
  const seq = counter.toString(32).padStart(3, "0");
  const random = Array.from(randomBytes(10), (b) => ALPHABET[b % 32]).join("");
  return `${prefix}_${time}${seq}${random}`;
}

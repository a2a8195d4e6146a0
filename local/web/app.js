// The Maskline sandbox page: virtual phones, sessions, the number pool and a live domain-event feed.
// Plain ES module, no build step. Talks to the /sandbox/* JSON API of `npm start` and listens on its SSE feed.

const MAX_FEED = 200;

/** @type {{pool: any[], sessions: any[], phones: Map<string, {card: HTMLElement, seen: Set<string>}>, twilioMessages: number}} */
const model = { pool: [], sessions: [], phones: new Map(), twilioMessages: 0 };
const seenEvents = new Set();

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (
      key.startsWith("data-") ||
      key.startsWith("aria-") ||
      key === "role" ||
      key === "title" ||
      key === "style"
    )
      node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (body.detail || body.title || body.error || body.message);
    super(detail ? String(detail) : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// ---------------------------------------------------------------- formatting

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const clock = (iso) => timeFormat.format(new Date(iso));

function remaining(iso) {
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (seconds <= 0) return "expiring…";
  if (seconds < 60) return `${seconds}s left`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${seconds % 60}s left`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m left`;
  return `${Math.floor(h / 24)}d ${h % 24}h left`;
}

/** A short letter per phone (A, B, …, Z, AA, …) in the order the phones were created. */
function letterOf(number) {
  let index = [...model.phones.keys()].indexOf(number);
  if (index < 0) return null;
  let label = "";
  do {
    label = String.fromCharCode(65 + (index % 26)) + label;
    index = Math.floor(index / 26) - 1;
  } while (index >= 0);
  return label;
}

const nameOf = (number) => {
  const letter = letterOf(number);
  return letter ? `Phone ${letter}` : number;
};
const isProxy = (number) => model.pool.some((n) => n.phoneNumber === number);
const idFor = (number) => `p${number.replace(/\D/g, "")}`;

// ---------------------------------------------------------------- toast

let toastTimer;
function toast(message, kind = "info") {
  if (kind === "error") console.error(message);
  const node = $("#toast");
  node.textContent = message;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    node.hidden = true;
  }, 4000);
}

// ---------------------------------------------------------------- phones

function ensurePhone(number) {
  const existing = model.phones.get(number);
  if (existing) return existing;
  const fragment = /** @type {HTMLTemplateElement} */ ($("#phone-template")).content.cloneNode(true);
  const card = /** @type {HTMLElement} */ (fragment.querySelector(".phone"));
  const id = idFor(number);
  card.id = id;
  card.dataset.phone = number;
  card.setAttribute("aria-labelledby", `${id}-title`);
  const title = $(".phone-number", card);
  title.id = `${id}-title`;
  const phone = { card, seen: new Set() };
  model.phones.set(number, phone);
  title.textContent = "";
  title.append(el("span", { class: "phone-letter", text: nameOf(number) }), el("span", { text: number }));
  $(".avatar", card).textContent = letterOf(number);

  const to = $(".compose-to", card);
  const other = $(".compose-to-other", card);
  const body = $(".compose-body", card);
  $(".thread", card).setAttribute("aria-label", `Messages of ${nameOf(number)}`);
  const form = $(".compose", card);
  const error = $(".form-error", card);
  // A hub session's choice is "<hub number> <tag>": the tag starts every typed text to it.
  const target = () => other.value.trim() || to.value.split(" ")[0];
  const tagOf = () => (other.value.trim() ? undefined : to.value.split(" ")[1]);

  /** Texts `text` (and pictures) to the chosen number; a typed text is cleared, and restored on failure. */
  const sendText = async (text, { mediaUrls, typed } = {}) => {
    error.textContent = "";
    const destination = target();
    if (!destination) {
      error.textContent = "Choose a proxy number or type one.";
      return;
    }
    if (typed) body.value = "";
    form.setAttribute("aria-busy", "true");
    try {
      const tag = typed ? tagOf() : undefined;
      const result = await api("POST", `/sandbox/phones/${encodeURIComponent(number)}/sms`, {
        to: destination,
        body: tag && !text.trim().startsWith("#") ? `${tag} ${text}` : text,
        ...(mediaUrls ? { mediaUrls } : {}),
      });
      if (result.status >= 400) error.textContent = `The SMS webhook answered HTTP ${result.status}.`;
    } catch (e) {
      error.textContent = `Not sent: ${e.message}`;
      if (typed && !body.value) body.value = text;
    } finally {
      form.removeAttribute("aria-busy");
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!body.value.trim()) {
      error.textContent = "Type a message first.";
      return;
    }
    await sendText(body.value, { typed: true });
  });
  // One click each: the carrier keywords Twilio acts on, and a picture (an MMS) with whatever is typed.
  for (const button of card.querySelectorAll(".quick"))
    button.addEventListener("click", () => void sendText(button.dataset.keyword));
  $(".picture", card).addEventListener("click", () =>
    sendText(body.value, { typed: true, mediaUrls: [new URL("/sample-picture.png", location.href).href] }),
  );
  $(".call", card).addEventListener("click", async () => {
    error.textContent = "";
    const destination = target();
    if (!destination) {
      error.textContent = "Choose a proxy number or type one to call.";
      return;
    }
    try {
      const result = await api("POST", `/sandbox/phones/${encodeURIComponent(number)}/call`, {
        to: destination,
      });
      if (result.status >= 400) error.textContent = `The voice webhook answered HTTP ${result.status}.`;
    } catch (e) {
      error.textContent = `Call failed: ${e.message}`;
    }
  });
  other.addEventListener("input", () => {
    to.disabled = other.value.trim() !== "";
  });

  $("#phones").append(card);
  renderComposeTargets(number);
  renderCounters();
  renderSessionForm();
  return phone;
}

function addEntry(number, entry) {
  const phone = ensurePhone(number);
  if (phone.seen.has(entry.id)) return;
  phone.seen.add(entry.id);
  const thread = $(".thread", phone.card);
  const nearBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
  const call = entry.direction.startsWith("call");
  const incoming = entry.direction === "in" || entry.direction === "call-in";
  const verb = { in: "from", out: "to", "call-in": "call from", "call-out": "call to" }[entry.direction];
  const meta = el(
    "span",
    { class: "meta" },
    `${verb} `,
    el("span", { class: "num", text: entry.counterpart }),
    isProxy(entry.counterpart) ? el("span", { class: "tag", text: "proxy" }) : null,
    entry.detail === "auto-reply" ? el("span", { class: "tag tag-auto", text: "auto-reply" }) : null,
    entry.detail === "carrier" ? el("span", { class: "tag tag-auto", text: "carrier" }) : null,
    threadOf(entry.body)
      ? el("span", { class: "tag tag-hub", text: `thread ${threadOf(entry.body)}` })
      : null,
  );
  const pictures = (entry.media ?? []).map((url, i) =>
    el("img", {
      class: "mms",
      src: url,
      alt: `Picture ${i + 1} of ${entry.media.length}`,
      loading: "lazy",
      "data-testid": "message-picture",
    }),
  );
  const bubble = el(
    "li",
    {
      class: `bubble ${incoming ? "in" : "out"}${call ? " call" : ""}${entry.detail === "auto-reply" || entry.detail === "carrier" ? " auto" : ""}`,
      "data-testid": "message-bubble",
      "data-direction": entry.direction,
      "data-counterpart": entry.counterpart,
      "data-entry-id": entry.id,
      "data-auto-reply": entry.detail === "auto-reply" ? "true" : undefined,
      "data-thread-tag": threadOf(entry.body),
    },
    meta,
    ...pictures,
    entry.body || !pictures.length ? el("span", { class: "text", text: entry.body }) : null,
    el("time", { dateTime: entry.at, text: clock(entry.at) }),
  );
  thread.append(bubble);
  while (thread.children.length > 200) thread.firstElementChild.remove();
  if (nearBottom || !incoming) thread.scrollTop = thread.scrollHeight;
}

/** The hub thread a text belongs to: "[#K1] …" as a hub participant receives it, "#K1 …" as they reply. */
function threadOf(body) {
  return /^\s*\[?(#[A-Za-z]\d{1,2})\]?(?![A-Za-z0-9])/.exec(body ?? "")?.[1]?.toUpperCase();
}

/** Twilio's carrier-level block on a phone: the numbers (or Messaging Services) it texted STOP to. */
function renderOptOut(number, optOut) {
  const phone = model.phones.get(number);
  if (!phone) return;
  const node = $(".phone-optout", phone.card);
  const numbers = optOut?.numbers ?? [];
  const services = optOut?.messagingServices ?? [];
  const blocked = numbers.length + services.length > 0;
  node.hidden = !blocked;
  node.dataset.optedOut = String(blocked);
  node.dataset.numbers = numbers.join(" ");
  node.dataset.services = services.join(" ");
  const parts = [...numbers, ...services.map((sid) => `every number of ${sid.slice(0, 8)}…`)];
  node.textContent = blocked ? `Opted out (carrier): ${parts.join(", ")}` : "";
  node.title = blocked
    ? "Sends from these to this phone fail with Twilio error 21610 until it texts START"
    : "";
}

/** The "to" choices of a phone: the proxy number of its own participant entry in each open session. */
function renderComposeTargets(number) {
  const phone = model.phones.get(number);
  if (!phone) return;
  const select = $(".compose-to", phone.card);
  const previous = select.value;
  const choices = [];
  for (const session of model.sessions) {
    const mine = session.participants.find((p) => p.phoneNumber === number);
    const peer = session.participants.find((p) => p !== mine);
    const value = mine?.hub ? `${mine.proxyNumber} ${mine.threadTag}` : mine?.proxyNumber;
    if (!mine || choices.some((c) => c.value === value)) continue;
    choices.push({
      value,
      text: `${mine.proxyNumber}${mine.hub ? ` (hub) ${mine.threadTag}` : ""} → ${peer ? (letterOf(peer.phoneNumber) ?? peer.phoneNumber) : "?"}`,
    });
  }
  const options = choices.length
    ? choices.map((c) => el("option", { value: c.value, text: c.text }))
    : [el("option", { value: "", text: "no open session" })];
  select.replaceChildren(...options);
  if (choices.some((c) => c.value === previous)) select.value = previous;
  const count = choices.length;
  $(".phone-sessions", phone.card).textContent =
    count === 0 ? "No open session" : `In ${count} open session${count === 1 ? "" : "s"}`;
  phone.card.classList.toggle("idle", count === 0);
}

// ---------------------------------------------------------------- sessions, pool, form

function renderSessions() {
  const list = $("#sessions");
  const rows = new Map([...list.children].map((row) => [row.dataset.sessionId, row]));
  const wanted = new Set(model.sessions.map((s) => s.sessionId));
  for (const [id, row] of rows) if (!wanted.has(id)) row.remove();
  for (const session of model.sessions) {
    if (rows.has(session.sessionId)) {
      const row = rows.get(session.sessionId);
      row.querySelector("[data-expires-at]").dataset.expiresAt = session.expiresAt;
      continue;
    }
    const names = session.participants.map((p) => nameOf(p.phoneNumber));
    const close = el(
      "button",
      {
        type: "button",
        class: "btn btn-danger btn-small",
        "data-testid": "close-session",
        "aria-label": `Close session between ${names.join(" and ")}`,
      },
      "Close",
    );
    close.addEventListener("click", async () => {
      close.disabled = true;
      const next = row.nextElementSibling ?? row.previousElementSibling;
      try {
        await api("DELETE", `/sandbox/sessions/${encodeURIComponent(session.sessionId)}`);
        toast(`Session ${session.sessionId} closed`);
        // Keep keyboard users somewhere sensible: the row (and its button) is about to disappear.
        (next?.querySelector("[data-testid=close-session]") ?? $("#open-session")).focus();
        scheduleRefresh(0);
      } catch (e) {
        close.disabled = false;
        toast(`Could not close: ${e.message}`, "error");
      }
    });
    const pairs = el(
      "ul",
      { class: "pairs" },
      ...session.participants.map((p) =>
        el(
          "li",
          {},
          el("span", { class: "who", text: nameOf(p.phoneNumber) }),
          el("span", { class: "num", text: p.phoneNumber }),
          el("span", { class: "via", text: "sees" }),
          el("span", { class: "num proxy", text: p.proxyNumber }),
          p.hub
            ? el("span", { class: "tag tag-hub", "data-testid": "hub-tag", text: `hub ${p.threadTag}` })
            : null,
        ),
      ),
    );
    const row = el(
      "li",
      { class: "session", "data-testid": "session-row", "data-session-id": session.sessionId },
      el(
        "div",
        { class: "session-head" },
        el("code", { class: "sid", text: session.sessionId, title: "session id" }),
        el("span", { class: "badge", text: session.mode }),
        el("span", {
          class: "expires",
          "data-expires-at": session.expiresAt,
          text: remaining(session.expiresAt),
        }),
      ),
      pairs,
      close,
    );
    list.append(row);
  }
  $("#sessions-empty").hidden = model.sessions.length > 0;
}

function renderPool() {
  const body = $("#pool-rows");
  const max = Math.max(1, ...model.pool.map((n) => n.load ?? 0));
  body.replaceChildren(
    ...model.pool.map((n) => {
      const load = n.load ?? 0;
      return el(
        "tr",
        { "data-testid": "pool-row", "data-number": n.phoneNumber },
        el("td", { class: "num", text: n.phoneNumber }),
        el("td", {}, el("span", { class: `status status-${n.status}`, text: n.status })),
        el(
          "td",
          {},
          el(
            "span",
            { class: "load" },
            el(
              "span",
              { class: "bar", "aria-hidden": "true" },
              el("span", { class: "fill", style: `width:${(load / max) * 100}%` }),
            ),
            el("span", { class: "load-n", text: String(load) }),
          ),
        ),
      );
    }),
  );
  $("#pool-empty").hidden = model.pool.length > 0;
}

function renderSessionForm() {
  const numbers = [...model.phones.keys()];
  const selects = [$("#open-session-a"), $("#open-session-b")];
  const previous = selects.map((s) => s.value);
  selects.forEach((select, i) => {
    const options = numbers.map((n) => el("option", { value: n, text: `${letterOf(n)} · ${n}` }));
    if (!options.length) options.push(el("option", { value: "", text: "create a phone first" }));
    select.replaceChildren(...options);
    const keep = numbers.includes(previous[i]) ? previous[i] : numbers[i];
    if (keep) select.value = keep;
  });
}

function renderCounters() {
  $("#stat-phones").textContent = String(model.phones.size);
  $("#stat-sessions").textContent = String(model.sessions.length);
  $("#stat-twilio").textContent = String(model.twilioMessages);
  $("#phones-empty").hidden = model.phones.size > 0;
}

// ---------------------------------------------------------------- feed

function summary(event) {
  const d = event.detail ?? {};
  switch (event.type) {
    case "SessionOpened":
      return d.participants.map((p) => `${nameOf(p.phoneNumber)} sees ${p.proxyNumber}`).join(" · ");
    case "SessionClosed":
      return `closed by ${d.reason}`;
    case "SessionExpired":
      return `expired at ${clock(d.expiresAt)}`;
    case "SessionExtended":
      return `extended to ${clock(d.expiresAt)}`;
    case "PairReleased":
      return `${nameOf(d.participantNumber)} ↔ ${d.proxyNumber} released`;
    case "MessageReceived":
      return `${d.from ? nameOf(d.from) : "platform"} → ${d.proxyNumber} (${d.bodyLength} chars)`;
    case "MessageForwarded":
      return `${d.from} → ${nameOf(d.to)}`;
    case "MessageDelivered":
      return `${d.status}`;
    case "MessageFailed":
      return `${d.reason}${d.errorCode ? ` (${d.errorCode})` : ""}`;
    case "MessageBlocked":
      return d.reason;
    case "OutOfSessionMessage":
      return `${nameOf(d.from)} → ${d.to} by ${d.channel}${d.replied ? ", auto-replied" : ""}`;
    case "CallBridged":
      return `${nameOf(d.from)} → ${nameOf(d.to)} shown as ${d.callerId}`;
    case "NumberAdded":
    case "NumberRetired":
      return d.phoneNumber;
    case "PoolHealthReported":
      return `${d.activeNumbers} numbers, ${d.openPairs} open pairs, headroom ${d.headroom}`;
    case "PoolLow":
      return `headroom ${d.headroom} below ${d.threshold}`;
    default:
      return "";
  }
}

const category = (type) =>
  type.startsWith("Session")
    ? "session"
    : type.startsWith("Message") || type === "OutOfSessionMessage" || type === "CallBridged"
      ? type === "MessageFailed" || type === "MessageBlocked"
        ? "bad"
        : "message"
      : type.startsWith("Pool")
        ? "pool"
        : "number";

function addFeedEvent(busEvent, { prepend = true } = {}) {
  if (!busEvent || seenEvents.has(busEvent.id)) return;
  seenEvents.add(busEvent.id);
  const event = busEvent.detail ?? {};
  const type = event.type ?? busEvent.detailType;
  let text = "";
  try {
    text = summary({ ...event, type });
  } catch {
    text = "";
  }
  const item = el(
    "li",
    {
      class: `feed-item cat-${category(type)}${type === "PoolHealthReported" ? " health" : ""}`,
      "data-testid": "feed-item",
      "data-type": type,
    },
    el("time", { dateTime: busEvent.time, text: clock(busEvent.time) }),
    el("span", { class: "type", text: type }),
    el("span", { class: "what", text }),
    event.sessionId ? el("code", { class: "sid", text: event.sessionId }) : null,
  );
  const feed = $("#feed");
  if (prepend) feed.prepend(item);
  else feed.append(item);
  while (feed.children.length > MAX_FEED) feed.lastElementChild.remove();
}

const refreshingTypes = /^(Session|Pair|Number|Pool)/;

// ---------------------------------------------------------------- state

let refreshing = null;
let refreshAgain = false;
let refreshTimer;

async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      const state = await api("GET", "/sandbox/state");
      model.pool = state.pool ?? [];
      model.sessions = (state.sessions ?? []).filter((s) => s.status === "open");
      model.twilioMessages = state.twilioMessages ?? 0;
      for (const phone of state.phones ?? []) {
        ensurePhone(phone.phoneNumber);
        for (const entry of phone.entries) addEntry(phone.phoneNumber, entry);
        renderOptOut(phone.phoneNumber, phone.optOut);
      }
      const fresh = (state.events ?? []).filter((e) => !seenEvents.has(e.id));
      for (const e of fresh) addFeedEvent(e);
      renderPool();
      renderSessions();
      for (const number of model.phones.keys()) renderComposeTargets(number);
      renderSessionForm();
      renderCounters();
    } catch (e) {
      toast(`Could not load state: ${e.message}`, "error");
    }
  })();
  await refreshing;
  refreshing = null;
  if (refreshAgain) {
    refreshAgain = false;
    await refresh();
  }
}

function scheduleRefresh(delay = 120) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => void refresh(), delay);
}

function connect() {
  const status = $("#connection");
  const source = new EventSource("/sandbox/events");
  const parse = (handler) => (message) => {
    try {
      handler(JSON.parse(message.data));
    } catch (e) {
      console.error("bad event", e);
    }
  };
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "conn conn-on";
    scheduleRefresh(0);
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.className = "conn conn-off";
  });
  source.addEventListener(
    "phone-entry",
    parse(({ phoneNumber, entry }) => addEntry(phoneNumber, entry)),
  );
  source.addEventListener(
    "phone",
    parse(({ phoneNumber }) => {
      if (!model.phones.has(phoneNumber)) ensurePhone(phoneNumber);
    }),
  );
  source.addEventListener(
    "opt-out",
    parse(({ phoneNumber, optOut }) => renderOptOut(phoneNumber, optOut)),
  );
  source.addEventListener(
    "twilio-message",
    parse(() => {
      model.twilioMessages++;
      renderCounters();
    }),
  );
  source.addEventListener(
    "domain-event",
    parse((busEvent) => {
      addFeedEvent(busEvent);
      const type = busEvent.detail?.type ?? busEvent.detailType;
      if (refreshingTypes.test(type) && type !== "PoolHealthReported") scheduleRefresh();
    }),
  );
}

// ---------------------------------------------------------------- forms

function wireForms() {
  $("#create-phone-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#new-phone-number");
    const requested = input.value.trim();
    try {
      const { phoneNumber } = await api(
        "POST",
        "/sandbox/phones",
        requested ? { phoneNumber: requested } : {},
      );
      input.value = "";
      const { card } = ensurePhone(phoneNumber);
      card.classList.add("new");
      setTimeout(() => card.classList.remove("new"), 1200);
      toast(`${nameOf(phoneNumber)} created: ${phoneNumber}`);
    } catch (e) {
      toast(`Could not create the phone: ${e.message}`, "error");
    }
  });

  $("#open-session-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("#open-session-error");
    error.textContent = "";
    const a = $("#open-session-a").value;
    const b = $("#open-session-b").value;
    if (!a || !b) {
      error.textContent = "Create two phones first.";
      return;
    }
    if (a === b) {
      error.textContent = "Pick two different phones.";
      return;
    }
    const request = { participants: [{ phoneNumber: a }, { phoneNumber: b }] };
    const ttl = $("#open-session-ttl").value.trim();
    if (ttl) request.ttlSeconds = Number(ttl);
    const mode = $("#open-session-mode").value;
    if (mode) request.mode = mode;
    try {
      const session = await api("POST", "/sandbox/sessions", request);
      toast(
        `Session opened: ${session.participants.map((p) => `${nameOf(p.phoneNumber)} sees ${p.proxyNumber}`).join(", ")}`,
      );
      await refresh();
    } catch (e) {
      error.textContent = `Not opened: ${e.message}`;
    }
  });

  $("#faults-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const rate = Number($("#fault-rate").value || 0);
    const statuses = $("#fault-statuses")
      .value.split(/[\s,]+/)
      .filter(Boolean)
      .map(Number);
    try {
      await api("POST", "/sandbox/faults", { rate, statuses });
      toast(rate > 0 ? `Twilio now fails ${Math.round(rate * 100)}% of sends` : "Twilio faults off");
    } catch (e) {
      toast(`Could not set faults: ${e.message}`, "error");
    }
  });

  const health = $("#feed-health");
  const applyHealth = () => $("#feed").classList.toggle("show-health", health.checked);
  health.addEventListener("change", applyHealth);
  applyHealth();
}

// ---------------------------------------------------------------- start

wireForms();
renderCounters();
renderSessionForm();
connect();
void refresh();
setInterval(() => {
  for (const node of document.querySelectorAll("[data-expires-at]")) {
    node.textContent = remaining(node.dataset.expiresAt);
  }
}, 1000);

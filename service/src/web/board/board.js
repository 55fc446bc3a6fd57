// The rsvp booking board: a timeline of free, held and booked time per
// resource for one day, kept live from /v1/changes; reserve by selecting
// free time; confirm or cancel your own reservations. It speaks the HTTP/JSON
// API only, with the token (if the server needs one) in the Authorization
// header, never in a URL.
"use strict";

const SLOT_MINUTES = 30;
const SLOTS = (24 * 60) / SLOT_MINUTES;
const $ = (selector) => document.querySelector(selector);

const state = {
  token: localStorage.getItem("rsvp.token") || "",
  me: null, // WhoAmI
  resources: [],
  day: "",
  user: "",
  availability: new Map(), // resource id -> ResourceAvailability
  mine: [], // the user's reservations this day
  selection: null, // {resource, from, to} slot indices, inclusive
  lastEventId: null,
  listening: null, // AbortController of the change stream
};

function iso(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function dayStart() {
  const [y, m, d] = state.day.split("-").map(Number);
  return new Date(y, m - 1, d);
}

function slotTime(index) {
  return new Date(dayStart().getTime() + index * SLOT_MINUTES * 60000);
}

function clock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// One call of the HTTP/JSON API: the answer's JSON, or an Error carrying
// the google.rpc.Status body and the HTTP status.
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { message: text };
  }
  if (!response.ok) {
    const error = new Error(json.message || response.statusText);
    error.http = response.status;
    error.status = json;
    throw error;
  }
  return json;
}

function detail(status, suffix) {
  return (status.details || []).find((d) => (d["@type"] || "").endsWith(suffix));
}

// A refusal in words a person can act on.
function explain(error) {
  const status = error.status || {};
  const conflict = detail(status, "reservation.ReservationConflict");
  if (conflict) {
    const spans = (conflict.full || [])
      .map((span) => `${clock(new Date(span.start))}–${clock(new Date(span.end))}`)
      .join(", ");
    const resource = (conflict.requested || {}).resourceId || "the resource";
    return `Not reserved: ${resource} is already taken ${spans || "then"}` +
      ` (capacity ${conflict.capacity || 1}). Pick other free time.`;
  }
  const policy = detail(status, "reservation.PolicyViolation");
  if (policy) {
    const rules = (policy.violations || []).map((v) => v.message).join("; ");
    return `Not reserved, against the resource's rules: ${rules}.`;
  }
  const bad = detail(status, "google.rpc.BadRequest");
  if (bad && bad.fieldViolations && bad.fieldViolations.length) {
    const v = bad.fieldViolations[0];
    return `Not accepted: ${v.field} ${v.description}.`;
  }
  if (error.http === 401) return "The server needs a token: enter it above.";
  if (error.http === 403) return "Not allowed: " + error.message;
  return error.message || "The call failed.";
}

function say(text, kind) {
  const message = $("#message");
  message.textContent = text;
  message.className = kind;
}

// ---- what is shown -------------------------------------------------------

function cellState(resource, index) {
  const from = slotTime(index).getTime();
  const to = slotTime(index + 1).getTime();
  const mine = state.mine.some(
    (r) =>
      r.resourceId === resource &&
      ["RESERVATION_STATUS_PENDING", "RESERVATION_STATUS_CONFIRMED", "RESERVATION_STATUS_CHECKED_IN"].includes(r.status) &&
      Date.parse(r.start) < to && Date.parse(r.end) > from,
  );
  if (mine) return "mine";
  const answer = state.availability.get(resource);
  if (!answer) return "closed";
  if (answer.deleted) return "closed";
  let free = Infinity;
  let held = 0;
  let open = true;
  for (const segment of answer.segments || []) {
    if (Date.parse(segment.start) < to && Date.parse(segment.end) > from) {
      free = Math.min(free, segment.free || 0);
      held = Math.max(held, segment.held || 0);
      open = open && !!segment.open;
    }
  }
  if (!open) return "closed";
  if (free === 0) return held > 0 ? "held" : "taken";
  const bookable = (answer.slots || []).some(
    (slot) => Date.parse(slot.start) === from,
  );
  if (!bookable) return "refused";
  return free < (answer.capacity || 1) ? "part" : "free";
}

function render() {
  const axis = $("#axis");
  axis.replaceChildren(document.createElement("span"));
  for (let i = 0; i < SLOTS; i += 4) {
    const label = document.createElement("span");
    label.textContent = clock(slotTime(i));
    axis.append(label);
  }
  const rows = $("#rows");
  rows.replaceChildren();
  const now = Date.now();
  for (const resource of state.resources) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.resource = resource;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = resource;
    name.title = resource;
    row.append(name);
    for (let i = 0; i < SLOTS; i++) {
      const cell = document.createElement("span");
      const kind = cellState(resource, i);
      cell.className = "cell " + kind;
      const start = slotTime(i);
      if (start.getTime() <= now && now < slotTime(i + 1).getTime()) cell.classList.add("now");
      const s = state.selection;
      if (s && s.resource === resource && i >= s.from && i <= s.to) cell.classList.add("selected");
      cell.dataset.resource = resource;
      cell.dataset.start = iso(start);
      cell.dataset.index = i;
      cell.title = `${resource} ${clock(start)}–${clock(slotTime(i + 1))}: ${kind}`;
      row.append(cell);
    }
    rows.append(row);
  }
  renderSelection();
  renderMine();
}

function renderSelection() {
  const s = state.selection;
  const button = $("#reserve");
  if (!s) {
    $("#selection").textContent = "Nothing selected.";
    button.disabled = true;
    return;
  }
  $("#selection").textContent =
    `${s.resource}, ${clock(slotTime(s.from))}–${clock(slotTime(s.to + 1))}`;
  button.disabled = false;
}

function renderMine() {
  const body = $("#mine tbody");
  body.replaceChildren();
  for (const r of state.mine) {
    const row = document.createElement("tr");
    row.dataset.id = r.id;
    const cells = [
      r.resourceId,
      clock(new Date(r.start)),
      clock(new Date(r.end)),
      (r.status || "").replace("RESERVATION_STATUS_", "").toLowerCase(),
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    const actions = document.createElement("td");
    if (r.status === "RESERVATION_STATUS_PENDING") actions.append(action("Confirm", r.id, "confirm"));
    if (["RESERVATION_STATUS_PENDING", "RESERVATION_STATUS_CONFIRMED"].includes(r.status)) {
      actions.append(action("Cancel", r.id, "cancel"));
    }
    row.append(actions);
    body.append(row);
  }
}

function action(label, id, verb) {
  const button = document.createElement("button");
  button.textContent = label;
  button.className = verb;
  button.addEventListener("click", async () => {
    try {
      await api("POST", `/v1/reservations/${encodeURIComponent(id)}:${verb}`, {});
      say(verb === "confirm" ? "Confirmed." : "Cancelled.", "ok");
      await refresh();
    } catch (error) {
      say(explain(error), "error");
    }
  });
  return button;
}

// ---- loading -------------------------------------------------------------

async function refresh() {
  if (!state.resources.length || !state.day) return;
  const start = iso(slotTime(0));
  const end = iso(slotTime(SLOTS));
  const [free, mine] = await Promise.all([
    api("POST", "/v1/availability", {
      resourceIds: state.resources,
      start,
      end,
      slotDuration: `${SLOT_MINUTES * 60}s`,
      slotStep: `${SLOT_MINUTES * 60}s`,
    }),
    state.user
      ? api("GET", `/v1/reservations?userId=${encodeURIComponent(state.user)}` +
          `&start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}&pageSize=100`)
      : Promise.resolve({}),
  ]);
  state.availability = new Map((free.resources || []).map((r) => [r.resourceId, r]));
  state.mine = (mine.reservations || []).filter((r) => state.resources.includes(r.resourceId));
  if (state.lastEventId === null) state.lastEventId = free.asOfChangeId || "0";
  render();
}

let pending = null;
function refreshSoon() {
  clearTimeout(pending);
  pending = setTimeout(() => refresh().catch((e) => say(explain(e), "error")), 100);
}

// The change stream, read with fetch so that the token goes in a header;
// on any end it reconnects with Last-Event-ID, missing nothing. A refusal
// to resume (the changes after the last id seen are gone) starts again
// from a fresh picture; missing credentials show the token form.
async function listen() {
  if (state.listening) state.listening.abort();
  const controller = new AbortController();
  state.listening = controller;
  const live = $("#live");
  let wait = 1000;
  while (!controller.signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (state.token) headers.Authorization = "Bearer " + state.token;
      if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
      const query = state.resources.length === 1
        ? `?resourceId=${encodeURIComponent(state.resources[0])}` : "";
      const response = await fetch("/v1/changes" + query, { headers, signal: controller.signal });
      if (!response.ok) {
        const status = await response.json().catch(() => ({}));
        const error = Object.assign(new Error(status.message || "HTTP " + response.status),
          { http: response.status, status });
        if (response.status === 401) {
          $("#login").hidden = false;
          say(explain(error), "error");
          return;
        }
        if (status.code === 11 || status.code === 9) {
          // OUT_OF_RANGE / FAILED_PRECONDITION: resume no more; redraw.
          state.lastEventId = null;
          await refresh();
          continue;
        }
        throw error;
      }
      wait = 1000;
      live.className = "on";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          if (controller.signal.aborted) return;
          event(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error.http) say("Live updates paused: " + explain(error), "error");
    }
    live.className = "off";
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(wait * 2, 30000);
  }
}

function event(block) {
  let id = null;
  let type = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id:")) id = line.slice(3).trim();
    else if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (id === null || !data) return;
  state.lastEventId = id;
  // `start` names where the stream starts; only changes redraw.
  if (type !== "message") return;
  const change = JSON.parse(data);
  const resource = (change.reservation || {}).resourceId;
  if (state.resources.includes(resource)) refreshSoon();
}

// ---- choosing and reserving ----------------------------------------------

let dragging = null;

function selectCell(cell, extend) {
  const resource = cell.dataset.resource;
  const index = Number(cell.dataset.index);
  const s = state.selection;
  if (extend && s && s.resource === resource) {
    state.selection = { resource, from: Math.min(s.from, index), to: Math.max(s.to, index) };
  } else {
    state.selection = { resource, from: index, to: index };
  }
  say("", "");
  render();
}

function wire() {
  const rows = $("#rows");
  rows.addEventListener("mousedown", (e) => {
    const cell = e.target.closest(".cell");
    if (!cell) return;
    dragging = cell.dataset.resource;
    selectCell(cell, e.shiftKey);
  });
  rows.addEventListener("mouseover", (e) => {
    const cell = e.target.closest(".cell");
    if (dragging && cell && cell.dataset.resource === dragging && e.buttons === 1) selectCell(cell, true);
  });
  document.addEventListener("mouseup", () => (dragging = null));

  $("#reserve").addEventListener("click", async () => {
    const s = state.selection;
    if (!s) return;
    const reservation = {
      resourceId: s.resource,
      start: iso(slotTime(s.from)),
      end: iso(slotTime(s.to + 1)),
    };
    if (state.user) reservation.userId = state.user;
    try {
      const made = await api("POST", "/v1/reservations", { reservation });
      const r = made.reservation;
      say(`Held ${r.resourceId} ${clock(new Date(r.start))}–${clock(new Date(r.end))}: confirm it below.`, "ok");
      state.selection = null;
      await refresh();
    } catch (error) {
      say(explain(error), "error");
    }
  });

  $("#view").addEventListener("submit", (e) => {
    e.preventDefault();
    show();
  });
  const shift = (days) => {
    const day = dayStart();
    day.setDate(day.getDate() + days);
    $("#day").value = `${day.getFullYear()}-${String(day.getMonth() + 1).padStart(2, "0")}-${String(day.getDate()).padStart(2, "0")}`;
    show();
  };
  $("#prev").addEventListener("click", () => shift(-1));
  $("#next").addEventListener("click", () => shift(1));

  $("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.token = $("#token").value.trim();
    localStorage.setItem("rsvp.token", state.token);
    await start();
  });
}

// Reads the form into the state (and the address bar), then loads.
async function show() {
  // The old stream's events must not move the new one's position.
  if (state.listening) state.listening.abort();
  state.listening = null;
  state.resources = $("#resources").value.split(",").map((s) => s.trim()).filter(Boolean);
  state.day = $("#day").value;
  // A user reserves and lists as themself, whatever the address says.
  const asUser = state.me && state.me.role === "ROLE_USER";
  state.user = (!asUser && $("#user").value.trim()) || (state.me && state.me.principal) || "";
  state.selection = null;
  const params = new URLSearchParams({ resources: state.resources.join(","), day: state.day });
  if ($("#user").value.trim()) params.set("user", $("#user").value.trim());
  history.replaceState(null, "", "?" + params);
  state.lastEventId = null;
  try {
    await refresh();
    listen();
  } catch (error) {
    say(explain(error), "error");
  }
}

async function start() {
  try {
    state.me = await api("GET", "/v1/whoami");
  } catch (error) {
    if (error.http === 401) {
      $("#login").hidden = false;
      say(explain(error), "error");
      return;
    }
    throw error;
  }
  $("#login").hidden = true;
  const who = state.me.principal
    ? `${state.me.principal} (${(state.me.role || "").replace("ROLE_", "").toLowerCase()})`
    : "no authentication";
  $("#who").textContent = who;
  // A user reserves for themself; "reserve as" is for admins and open servers.
  $("#as").hidden = state.me.role === "ROLE_USER";
  try {
    const known = await api("GET", "/v1/resources?pageSize=100");
    $("#known").replaceChildren(
      ...(known.resources || []).map((r) => Object.assign(document.createElement("option"), { value: r.id })),
    );
  } catch {
    // Listing resources is a convenience.
  }
  if ($("#resources").value) await show();
}

function init() {
  const params = new URLSearchParams(location.search);
  const today = new Date();
  $("#resources").value = params.get("resources") || "";
  $("#day").value = params.get("day") ||
    `${today.getFullYear()}-${String(today.getMonth() + 1).padStart(2, "0")}-${String(today.getDate()).padStart(2, "0")}`;
  $("#user").value = params.get("user") || "";
  wire();
  start().catch((error) => say(explain(error), "error"));
}

init();

// An event record that is no object (null, or a string), written by hand with `memory set --force`, among a
// session's real events: every replay of the audit trail passes over it and goes on with the next events, in
// order. Before, the supervisor's `events.subscribe` failed on a null one ("Cannot read properties of null
// (reading 'seq')") and sent a string as an event, `events.list` returned both, and `apex serve`'s event
// stream (from a live supervisor or, with none, from the store) ended with an error event in its place.
import { describe, expect, it } from "vitest";
import { Project, events, shellAgents } from "./fixtures/agents/harness.js";
import { callSupervisor, subscribeSupervisor } from "../dist/core/rpc/call.js";
import { ok, serve, share } from "./support/serve.js";
import { stopsAfterEach } from "./support/cleanup.js";

const CONFIG = shellAgents({ worker: "while true; do sleep 0.5; done" });
const stops = stopsAfterEach();

type Event = { seq: number; type: string } & Record<string, unknown>;

/** The session's real events as the store holds them (its records with a sequence number), oldest first. */
function storedEvents(project: Project, sid: string): Event[] {
  return (events(project, sid) as unknown[]).filter((value): value is Event => typeof (value as { seq?: unknown } | null)?.seq === "number").sort((a, b) => a.seq - b.seq);
}

/** The events the supervisor's `events.subscribe` replays from the start, up to seq `last` (rejects if the stream fails first). */
async function supervisorReplay(socket: string, last: number): Promise<unknown[]> {
  const seen: unknown[] = [];
  let reached: () => void = () => {};
  const enough = new Promise<void>((resolve) => (reached = resolve));
  const subscription = subscribeSupervisor(socket, "events.subscribe", { from_seq: 0 }, (event) => {
    seen.push(event);
    if ((event as { seq?: unknown } | null)?.seq === last) reached();
  });
  try {
    await Promise.race([enough, subscription.done.then(() => Promise.reject(new Error(`the stream ended before seq ${last}: ${JSON.stringify(seen)}`)))]);
  } finally {
    subscription.close();
  }
  return seen;
}

/**
 * `apex serve`'s event stream replayed from the start: its events until one with seq `last` came (a live session),
 * or until the server ended the stream (an ended session). An error event ends it too.
 */
async function httpReplay(url: string, sid: string, token: string, last?: number): Promise<Array<{ event: string; data: any }>> {
  const abort = new AbortController();
  stops.push(() => abort.abort());
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }),
    signal: abort.signal,
  });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const parsed = () =>
    text
      .split("\n\n")
      .map((block) => ({ event: /^event: (.*)$/m.exec(block)?.[1], data: /^data: (.*)$/m.exec(block)?.[1] }))
      .filter((block) => block.event && block.data)
      .map((block) => ({ event: block.event!, data: JSON.parse(block.data!) }));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    const blocks = parsed();
    if (blocks.some((block) => block.event === "error" || (last !== undefined && block.event === "events.subscribe" && block.data?.seq === last))) break;
  }
  abort.abort();
  return parsed();
}

describe("event records written by hand that are no object", () => {
  it("are passed over by the replay of the supervisor's events.subscribe and events.list, and by apex serve's event stream from the supervisor and from the store", async () => {
    const project = new Project(CONFIG, "apex-event-records-");
    const started = project.start(["--task", "records"]);
    const sid = started.session_id;
    for (const title of ["first", "second", "third"]) ok(project.apex(["task", "add", title]));
    const owner = share(project, sid, "olga", "owner");
    ok(project.apex(["memory", "set", `/sessions/${sid}/events/00000002`, "null", "--force"]));
    ok(project.apex(["memory", "set", `/sessions/${sid}/events/00000004`, '"garbage"', "--force"]));
    // An object without its sequence number: a stream read from the store could not go on past it (it sent the history again at every poll).
    ok(project.apex(["memory", "set", `/sessions/${sid}/events/00000005`, '{"type": "note", "by": "hand"}', "--force"]));
    const live = storedEvents(project, sid);
    const last = live.at(-1)!.seq;
    expect(last).toBeGreaterThan(5);
    expect(live.map((event) => event.seq)).not.toContain(2);
    expect(live.map((event) => event.seq)).not.toContain(4);
    expect(live.map((event) => event.seq)).not.toContain(5);

    // The supervisor's own replay (what `apex start --attach` and apex serve subscribe to), and its events.list.
    // (Soft: each way of reading the events is checked, whichever else fails.)
    expect.soft(await supervisorReplay(started.socket, last).catch((error: Error) => error.message)).toEqual(live);
    expect.soft(await callSupervisor(started.socket, "events.list", { from_seq: 0 })).toEqual(live);

    // apex serve, the supervisor running: the replay through it.
    const url = await serve(project, stops);
    const fromSupervisor = await httpReplay(url, sid, owner.token, last);
    expect.soft(fromSupervisor.filter((block) => block.event !== "events.subscribe"), JSON.stringify(fromSupervisor)).toEqual([]);
    expect.soft(fromSupervisor.map((block) => block.data)).toEqual(live);

    // apex serve, the session stopped: the replay read from the store, to the session's end.
    ok(project.apex(["stop"]));
    const ended = storedEvents(project, sid);
    expect(ended.length).toBeGreaterThan(live.length);
    const fromStore = await httpReplay(url, sid, owner.token);
    expect(fromStore.map((block) => block.event), JSON.stringify(fromStore)).toEqual([...ended.map(() => "events.subscribe"), "end"]);
    expect(fromStore.slice(0, -1).map((block) => block.data)).toEqual(ended);
    expect(fromStore.at(-1)!.data).toEqual({ reason: `session ${sid.slice(0, 8)} has ended` });
  }, 120_000);
});

// The one-line form of each event type APEX records (`apex start --attach`, `apex connect` and its live view):
// every type in words, none as its type and raw JSON, and a hand-written event's fields kept on its line.
import { describe, expect, it } from "vitest";
import { eventParts } from "../cli/session/format.js";
import type { SessionEvent } from "../core/session/records.js";

const at = "2026-12-06T14:32:11.000Z";
const line = (event: Record<string, unknown>) => eventParts({ seq: 1, at, actor: "user:root", ...event } as unknown as SessionEvent).what;
const SRC = "3f2a9c1e-0000-4000-8000-000000000000";

describe("event lines", () => {
  it("say branches, merges, takeovers, restores, shares and git syncs in words", () => {
    expect(line({ type: "session.branched", name: "alt", from: { id: "x", session_id: SRC, sequence: 4, name: "checkpoint-004" }, checkpoint: "y", worktree: "/w/alt" })).toBe("session branched as alt from 3f2a9c1e/checkpoint-004 (worktree /w/alt)");
    expect(line({ type: "session.branch", name: "alt", session: "s", checkpoint: "x" })).toBe("branch alt made from this session");
    expect(line({ type: "session.merged", from: { session_id: SRC, name: "checkpoint-009" }, name: "checkpoint-012", strategy: "theirs", changes: 3, conflicts_settled: 1 })).toBe("merged 3f2a9c1e/checkpoint-009 in as checkpoint-012 (3 changes, 1 conflict settled: theirs)");
    expect(line({ type: "session.merged", from: { session_id: SRC, name: "checkpoint-009" }, name: "checkpoint-012", strategy: "fail", changes: 1, conflicts_settled: 0 })).toBe("merged 3f2a9c1e/checkpoint-009 in as checkpoint-012 (1 change)");
    expect(line({ type: "session.taken_over", from_host: "a", to_host: "b", generation: 2 })).toBe("session taken over by host b from a, whose lease had expired");
    expect(line({ type: "session.restored", checkpoint: "checkpoint-002", forced: true })).toBe("session restored from checkpoint checkpoint-002 (forced recovery)");
    // As the supervisor records it: the checkpoint's id, and what the restore reported, its session and name among it (it showed the id).
    const restored = { type: "session.restored", checkpoint: "5b0e6a4c-1d2e-4f60-9a7b-0c1d2e3f4a5b", forced: false, details: { id: "5b0e6a4c-1d2e-4f60-9a7b-0c1d2e3f4a5b", session_id: SRC, name: "checkpoint-004", trigger: "manual" } };
    expect(line(restored)).toBe("session restored from checkpoint 3f2a9c1e/checkpoint-004");
    expect(line({ type: "session.reconciled", requeued: ["t-0001", "t-0002"], resumed: [], stopped_agents: [], from: "live" })).toBe("records matched to what runs (from the live state): 2 tasks back to pending");
    expect(line({ type: "share.created", user: "bob", role: "viewer", token_id: "t", expires_at: null })).toBe("shared with bob as viewer");
    expect(line({ type: "share.revoked", user: "bob", token_ids: ["t"] })).toBe("access of bob revoked");
    expect(line({ type: "git.synced", branch: "main", commit: "0123456789abcdef0123", dirty: true })).toBe("git synced: main at 0123456789ab (uncommitted changes)");
    expect(line({ type: "git.operation", command: "commit", args: ["commit", "-m", "fix the parser"], source: "cli" })).toBe('git commit -m "fix the parser" (apex git)');
    expect(line({ type: "git.operation", command: "rebase", args: ["rebase", "main"], source: "git-hook" })).toBe("git rebase main (git hook)");
    expect(line({ type: "git.operation", command: null, args: [], source: "cli" })).toBe("git (apex git)");
    expect(line({ type: "checkpoint.deleted", checkpoint: "id", name: "checkpoint-004", sequence: 4, trigger: "manual", forced: true })).toBe("checkpoint 4 (checkpoint-004, manual) deleted with --force");
    expect(line({ type: "retention.delete", checkpoint: "id", name: "checkpoint-008", sequence: 8, reason: "no rule keeps it", run: "auto", trigger: "beforeTask" })).toBe("checkpoint 8 (checkpoint-008, beforeTask) removed by retention: no rule keeps it");
    expect(line({ type: "retention.delete", checkpoint: "id", name: "checkpoint-003", sequence: 3, reason: "over max_checkpoints 100", run: "command" })).toBe("checkpoint 3 (checkpoint-003) removed by retention (apex session cleanup): over max_checkpoints 100");
  });

  it("keep a hand-written event on one line, whatever its fields hold", () => {
    const odd = line({ type: "session.merged", from: { session_id: "a\nb", name: "c\u001b[31m" }, name: 5, changes: "many" });
    expect(odd).not.toMatch(/[\n\u001b]/);
    expect(line({ type: "session.branched", name: "alt", from: null })).toBe("session branched as alt from a checkpoint");
    // A type APEX does not record: its type and fields, as before.
    expect(line({ type: "note", text: "hi" })).toBe('note {"text":"hi"}');
  });
});

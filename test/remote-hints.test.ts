// Through `--remote`, the hints this process writes name commands as they reach that session: a
// task claim's, a wait's that timed out, named `apex task reopen …` as written, which acts on
// this machine's project. The server's hints got `--remote` as they arrived; these did not.
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApexError } from "../dist/core/errors.js";
import { reportError } from "../dist/cli/output.js";

const TARGET = "127.0.0.1:7555/3f2a9c1e-0b7d-4c55-9e61-2d8f3a4b5c6d";

function reported(error: ApexError, json: boolean): string {
  let written = "";
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    written += String(chunk);
    return true;
  });
  try {
    reportError(error, json);
  } finally {
    spy.mockRestore();
  }
  return written;
}

afterEach(() => {
  delete process.env.APEX_REMOTE;
});

describe("hints through --remote", () => {
  const claim = () =>
    new ApexError("APEX_E_NO_TASK", "No pending task for agent coder: the pending task is assigned to another agent: t-0002 (adversary).", {
      hint: "`apex task reopen t-0002 --assign coder` gives t-0002 to coder; `apex task list --status pending` lists them.",
    });

  it("gives the hint's remote commands --remote TARGET, in text and --json, and leaves the exit code", () => {
    process.env.APEX_REMOTE = TARGET;
    const text = reported(claim(), false);
    expect(text).toContain(`hint: \`apex --remote ${TARGET} task reopen t-0002 --assign coder\` gives t-0002 to coder; \`apex --remote ${TARGET} task list --status pending\` lists them.`);
    const json = JSON.parse(reported(claim(), true)) as { error: { hint: string; code: string; exit_code: number } };
    expect(json.error).toMatchObject({ code: "APEX_E_NO_TASK", exit_code: claim().exitCode });
    expect(json.error.hint).toContain(`\`apex --remote ${TARGET} task reopen t-0002`);
  });

  it("leaves a command that works only on the host, one that has --remote already, and every hint without --remote, as they are", () => {
    process.env.APEX_REMOTE = TARGET;
    const hostOnly = new ApexError("APEX_E_FORBIDDEN", "Not served remotely.", { hint: "Run `apex session cleanup` on the server's host; `apex --remote x/y status` reads it." });
    expect(reported(hostOnly, false)).toContain("hint: Run `apex session cleanup` on the server's host; `apex --remote x/y status` reads it.");
    delete process.env.APEX_REMOTE;
    expect(reported(claim(), false)).toContain("hint: `apex task reopen t-0002 --assign coder`");
  });
});

/**
 * The command a refusal while a session runs names to stop it (store migrate, store
 * rename-project, session archive), from the project's tree or any other: a branch running in its
 * worktree is not the session a bare `apex stop` in the project's tree stops (the project's own).
 */
export function stopCommand(sessionId: string, name: unknown): string {
  return `\`apex --session ${typeof name === "string" && name ? name : sessionId} stop\``;
}

/** The command a refusal while a session runs names to stop it (store migrate, store rename-project). */
/**
 * The `apex stop` that stops this session from the project's tree or any other: a branch running
 * in its worktree is not the one a bare `apex stop` there stops (the project's own session, or none).
 */
export function stopCommand(sessionId: string, name: unknown): string {
  return `\`apex --session ${typeof name === "string" && name ? name : sessionId} stop\``;
}

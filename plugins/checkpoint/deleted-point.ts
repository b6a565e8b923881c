/**
 * What `session tree` says of a checkpoint no longer in the store that it still draws (tree.ts
 * TreeNode.deleted), apart from tree.ts so that `apex serve` scopes a tree for a grant
 * (sharing/scope.ts) without loading the checkpoint graph.
 */
export type DeletedPoint = "recorded by its branch" | "recorded by some of its branches" | "not recorded" | "recorded by its session";

/** What a deleted branch point's node says of it, from what each branch made from it says (its session's `parent.deleted`). */
export function deletedBranchPointMark(marks: Iterable<DeletedPoint>): DeletedPoint {
  const list = [...marks];
  const recorded = list.filter((mark) => mark === "recorded by its branch").length;
  return recorded === list.length ? "recorded by its branch" : recorded === 0 ? "not recorded" : "recorded by some of its branches";
}

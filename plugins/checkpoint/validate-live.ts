import { canonicalJson, decodeValueObject, sha256, walkTree, type Hash, type ObjectView } from "./engine/objects.js";
import type { Store } from "../../core/store/store.js";
import { isEncodedValue } from "../value-codec.js";
import { checkpointName, type CheckpointManifest } from "./manifest.js";
import { inScope, isDetached, keysInScope, segmentsPath } from "./scope.js";

/**
 * Live memory records have no hash of their own, so a damaged byte in one can read back as a
 * different, valid value. But every write is logged: a record that no write touched since the
 * latest verifying checkpoint must still be what that checkpoint holds. This finds records
 * that differ from it, are gone, or appeared, with no logged change, and gives repair the
 * checkpoint's value to put back.
 */

export interface LiveRecordFinding {
  kind: "record-damaged" | "record-missing" | "record-unlogged";
  path: string;
  /** The checkpoint's value object for the path (absent for record-unlogged). */
  hash?: Hash;
  /** "<session>/checkpoint-007". */
  checkpoint: string;
  /** The record no longer decodes: repair puts the checkpoint's value back. */
  restorable?: boolean;
}

/** Compares unchanged live records with `manifest` (the latest verifying checkpoint); undefined when the revision log cannot tell what changed since. */
export function checkLiveRecords(store: Store, view: ObjectView, manifest: CheckpointManifest, undecodable: ReadonlySet<string>): LiveRecordFinding[] | undefined {
  const changed = new Set<string>();
  let first: number | undefined;
  for (const change of store.changesSince(manifest.revision)) {
    first ??= change.revision;
    changed.add(change.path);
  }
  // The log must reach back to the checkpoint; otherwise nothing can be said.
  if (store.revision() > manifest.revision && first !== manifest.revision + 1) return undefined;
  const label = `${manifest.session_id}/${checkpointName(manifest.sequence)}`;
  const scope = manifest.memory.scope;
  const findings: LiveRecordFinding[] = [];
  const inTree = new Set<string>();
  for (const { segments, hash } of walkTree(view, manifest.memory.root)) {
    const path = segmentsPath(segments);
    inTree.add(path);
    if (changed.has(path) || !inScope(scope, path) || isDetached(path)) continue; // detached: no live record (scope.ts)
    if (undecodable.has(path)) {
      findings.push({ kind: "record-damaged", path, hash, checkpoint: label, restorable: true });
      continue;
    }
    const bytes = store.getEncoded(path);
    if (bytes === undefined) findings.push({ kind: "record-missing", path, hash, checkpoint: label });
    else if (sha256(bytes) !== hash && !sameLegacyValue(view, hash, store, path)) findings.push({ kind: "record-damaged", path, hash, checkpoint: label });
  }
  for (const path of keysInScope(store, scope)) {
    if (!inTree.has(path) && !changed.has(path)) findings.push({ kind: "record-unlogged", path, checkpoint: label });
  }
  return findings;
}

/** A value object written before the value encoding (canonical JSON text) holds the record's value in another form. */
function sameLegacyValue(view: ObjectView, hash: Hash, store: Store, path: string): boolean {
  try {
    const bytes = view.valueBytes(hash);
    if (isEncodedValue(bytes)) return false;
    return canonicalJson(decodeValueObject(bytes)) === canonicalJson(store.get(path));
  } catch {
    return false;
  }
}

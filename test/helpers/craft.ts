// Building blocks for crafted (hostile) bundles and checkpoints: tree nodes and values made
// by hand, checkpoint manifests re-signed, bundles re-encoded with consistent checksums, so
// that only APEX's content checks can catch what was changed.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { decodeTreeNode, encodeTreeNode, sha256, type DirEntry, type Hash, type ObjectKind, type TreeNode } from "../../plugins/checkpoint/engine/objects.js";
import type { JsonValue } from "../../core/store/store.js";
import { encodeValue } from "../../plugins/value-codec.js";
import { encodeBundle, type BundleContent, type BundleInput } from "../../plugins/archive/bundle.js";
import { manifestHash, type CheckpointManifest } from "../../plugins/checkpoint/manifest.js";

export interface CraftedObject {
  kind: ObjectKind;
  hash: Hash;
  bytes: Buffer;
}

/** A pool of objects: those of a bundle plus the ones a crafted tree adds. */
export class ObjectPool {
  readonly objects = new Map<Hash, CraftedObject>();

  constructor(content?: BundleContent) {
    if (content) for (const [hash, { kind, bytes }] of content.objects) this.objects.set(hash, { kind, hash, bytes });
  }

  value(value: JsonValue): Hash {
    const bytes = encodeValue(value);
    const hash = sha256(bytes);
    this.objects.set(hash, { kind: "value", hash, bytes });
    return hash;
  }

  /** A leaf node from entries (sorted here by the bytes of their names, as the format wants). */
  leaf(entries: DirEntry[]): Hash {
    const sorted = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a.name, "utf8"), Buffer.from(b.name, "utf8")));
    return this.raw(encodeTreeNode({ kind: "leaf", entries: sorted }));
  }

  /** A tree node from its bytes, as they are (for bytes encodeTreeNode would never write). */
  raw(bytes: Buffer): Hash {
    const hash = sha256(bytes);
    this.objects.set(hash, { kind: "tree", hash, bytes });
    return hash;
  }

  node(hash: Hash): TreeNode {
    return decodeTreeNode(this.objects.get(hash)!.bytes);
  }

  /** The entries of a leaf root (crafted sessions are small: their roots are leaves). */
  entries(root: Hash | null): DirEntry[] {
    if (!root) return [];
    const node = this.node(root);
    if (node.kind !== "leaf") throw new Error("expected a leaf root");
    return node.entries;
  }

  /** Objects reachable from `roots` (undecodable nodes are kept and not followed). */
  reachable(roots: Array<Hash | null>): CraftedObject[] {
    const out = new Map<string, CraftedObject>();
    const visit = (hash: Hash): void => {
      const object = this.objects.get(hash);
      if (!object || out.has(`tree:${hash}`)) return;
      out.set(`tree:${hash}`, object);
      let node: TreeNode;
      try {
        node = decodeTreeNode(object.bytes);
      } catch {
        return;
      }
      if (node.kind === "split") for (const bucket of node.buckets) visit(bucket.hash);
      else
        for (const entry of node.entries) {
          if (entry.value) out.set(`value:${entry.value}`, this.objects.get(entry.value)!);
          if (entry.tree) visit(entry.tree);
        }
    };
    for (const root of roots) if (root) visit(root);
    return [...out.values()];
  }
}

export function bundleInput(content: BundleContent): BundleInput {
  const { manifest } = content;
  return {
    kind: manifest.kind,
    created_at: manifest.created_at,
    apex_version: manifest.apex_version,
    project_id: manifest.project_id,
    session_id: manifest.session_id,
    session_state: manifest.session_state,
    last_sequence: manifest.last_sequence,
    checkpoints: manifest.checkpoints.map((entry) => ({ ...entry })),
    records: content.records.map(([path, value]): [string, JsonValue] => [path, structuredClone(value)]),
    objects: [...content.objects].map(([hash, { kind, bytes }]) => ({ kind, hash, bytes })),
  };
}

/**
 * Re-encodes a one-checkpoint bundle after `change` edited its checkpoint manifest (roots,
 * counts) and records: the manifest is re-signed, the bundle's object list becomes exactly
 * what the new roots reach in `pool`, and every checksum is consistent.
 */
export async function craftBundle(
  content: BundleContent,
  pool: ObjectPool,
  change: (checkpoint: CheckpointManifest, input: BundleInput) => void,
  codec: "brotli" | "gzip" = "brotli",
): Promise<Buffer> {
  const input = bundleInput(content);
  const sid = content.manifest.session_id;
  const entry = input.records.find(([path]) => /^\/sessions\/[^/]+\/checkpoint-\d+$/.test(path) && path.startsWith(`/sessions/${sid}/`))!;
  const checkpoint = entry[1] as unknown as CheckpointManifest;
  change(checkpoint, input);
  checkpoint.hash = manifestHash(checkpoint);
  input.checkpoints = input.checkpoints.map((listed) => (listed.sequence === checkpoint.sequence ? { ...listed, hash: checkpoint.hash } : listed));
  input.objects = pool.reachable([checkpoint.memory.root, checkpoint.tasks.root, checkpoint.agents.root]);
  return (await encodeBundle(input, codec)).file;
}

/** sha256 of the store's data file and the revision: equal before and after means nothing was written. */
export function storeFingerprint(storeFile: string): string {
  return createHash("sha256").update(readFileSync(storeFile)).digest("hex");
}

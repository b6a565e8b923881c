import { describe, expect, it } from "vitest";
import { isApexError } from "../core/errors.js";
import { memoryReadMethods } from "../core/session/memory-methods.js";
import { MemoryView } from "../core/session/memory-view.js";
import type { Entry } from "../core/store/store.js";
import { forEachBackend } from "./support/backends.js";

/**
 * memory.page, which `apex memory query`, `show` and `export` read through a supervisor a page at a
 * time (one reply carries at most 256 MiB of JSON): its pages, read on from each `next`, hold what
 * memory.query answers in one. Pages of large values, as the CLI reads them, are in memory.e2e.
 */
forEachBackend((backend) =>
  describe("memory.page", () => {
    it("answers what memory.query answers, for globs, plain paths and limits, in a session's own memory root and at the project's", async () => {
      const store = await backend.fresh();
      await store.batch((batch) => {
        for (const path of ["/a", "/a/x", "/a/y/z", "/a/y/w", "/b/x", "/notes/one", "/notes/two"]) batch.set(path, { at: path });
        // A session in a git worktree keeps its memory below its own root; another's is left out of the first.
        for (const path of ["/sessions/s1/memory/a/x", "/sessions/s1/memory/notes/mine", "/sessions/s2/memory/a/x", "/sessions/s1/tasks/t1"]) batch.set(path, { at: path });
      });
      for (const view of [MemoryView.ROOT, new MemoryView("/sessions/s1/memory")]) {
        const methods = memoryReadMethods(store, () => view);
        for (const glob of ["/**", "/a/**", "/a/*", "/a", "/notes/*", "/sessions/**", "/nothing/**"]) {
          for (const limit of [undefined, 1, 2, 5]) {
            const query = methods["memory.query"]!({ glob, limit }) as Entry[];
            const pages = await readPages(methods["memory.page"]!, glob, limit);
            expect(pages, `${view.root || "/"} ${glob} ${limit}`).toEqual(query);
          }
        }
      }
    });

    it("goes on after the key a page ended at, leaving it out; bad parameters are APEX_E_BAD_INPUT", async () => {
      const store = await backend.fresh();
      await store.batch((batch) => {
        for (let i = 0; i < 10; i++) batch.set(`/k/${i}`, i);
      });
      const page = memoryReadMethods(store)["memory.page"]!;
      expect(await page({ glob: "/k/*", after: "/k/6" })).toEqual({ entries: [7, 8, 9].map((i) => ({ path: `/k/${i}`, value: i })) });
      expect(await page({ glob: "/k/*", after: "/k/9" })).toEqual({ entries: [] });
      for (const params of [{}, { glob: 5 }, { glob: "/k/*", limit: 0 }, { glob: "/k/*", limit: 1.5 }, { glob: "/k/*", after: 3 }]) {
        const error = await Promise.resolve()
          .then(() => page(params))
          .catch((thrown: unknown) => thrown);
        expect(isApexError(error) && error.code, JSON.stringify(params)).toBe("APEX_E_BAD_INPUT");
      }
    });

    it("reads no more values than the page holds: with a limit, as many as it asks for", async () => {
      const store = await backend.fresh();
      await store.batch((batch) => {
        for (let i = 0; i < 500; i++) batch.set(`/v/${String(i).padStart(3, "0")}`, "x".repeat(1000));
      });
      let read = 0;
      const get = store.get.bind(store);
      store.get = (path) => (read++, get(path));
      const many = store.getEncodedMany?.bind(store);
      if (many) store.getEncodedMany = (paths) => ((read += paths.length), many(paths));
      const page = memoryReadMethods(store)["memory.page"]!;
      const reply = (await page({ glob: "/v/**", limit: 7 })) as { entries: Entry[]; next?: string };
      expect([reply.entries.length, reply.next]).toEqual([7, undefined]);
      expect(read).toBe(7);
    });
  }),
);

/** Every page of GLOB from PAGE (memory.page), each asked from the `next` of the one before, with what is left of LIMIT. */
async function readPages(page: (params: Record<string, unknown>) => unknown, glob: string, limit?: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  let after: string | undefined;
  for (;;) {
    const reply = (await page({ glob, ...(limit === undefined ? {} : { limit: limit - entries.length }), ...(after === undefined ? {} : { after }) })) as { entries: Entry[]; next?: string };
    entries.push(...reply.entries);
    if (reply.next === undefined) return entries;
    after = reply.next;
  }
}

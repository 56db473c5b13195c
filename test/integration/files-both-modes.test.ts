import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiFiles } from "../../cluster-agent/exec/api-files.ts";
import type { ExecTarget, SandboxFiles } from "../../cluster-agent/exec/executor.ts";
import { HttpFiles } from "../../cluster-agent/exec/files.ts";
import { HttpExecutor } from "../../cluster-agent/exec/http-executor.ts";
import type { ExecProtocol } from "../../devcluster/kubelet/index.ts";
import { SANDBOX_LIMITS } from "../../shared/api.ts";
import type { Result } from "../../shared/errors.ts";
import { listOrder } from "../../shared/list-page.ts";
import { type SandboxPodCluster, startSandboxPodCluster } from "../support/sandbox-pod.ts";

// The files contract in both modes against one devcluster sandbox pod: the exec server's /files
// (http) and pods/exec shell programs (api) must give the same answers, errors included — with a
// kubelet that offers the v5 exec protocol and with one that offers only v4 (before Kubernetes
// 1.29: no stdin half-close, so a write must never wait for end-of-file).

const value = <T>(r: Result<T>): T => {
  if (!r.ok) throw new Error(`${r.error.code}: ${r.error.message}`);
  return r.value;
};
const codeOf = (r: Result<unknown>) => (r.ok ? "ok" : r.error.code);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const signal = () => AbortSignal.timeout(30_000);

async function bytesOf(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

const KUBELETS: Array<[string, ExecProtocol[] | undefined]> = [
  ["kubelet offers v5", undefined],
  ["kubelet offers only v4", ["v4.channel.k8s.io"]],
];

describe.each(KUBELETS)(
  "sandbox files: http mode and api mode give identical results (%s)",
  (_, protocols) => {
    let cluster: SandboxPodCluster;
    let target: ExecTarget;
    let both: Array<[string, SandboxFiles]>;
    let shell: HttpExecutor;

    const run = async (command: string) =>
      value(await shell.exec(target, { command, timeoutMs: 10_000, signal: signal() }));

    beforeAll(async () => {
      cluster = await startSandboxPodCluster("sandbox-exec", protocols ? { execProtocols: protocols } : {});
      const { pod, podIP } = await cluster.createPod("files-parity");
      target = { namespace: cluster.namespace, pod, podIP, fence: 1 };
      shell = new HttpExecutor({ poolToken: cluster.poolToken });
      both = [
        ["http", new HttpFiles({ poolToken: cluster.poolToken })],
        ["api", new ApiFiles({ kubeConfig: cluster.kubeConfig })],
      ];
    }, 60_000);
    afterAll(async () => {
      await cluster?.close();
    });

    it("writes 1 MiB of random bytes atomically and reads them back exactly", async () => {
      for (const [mode, files] of both) {
        const bytes = new Uint8Array(randomBytes(1024 * 1024));
        const w = value(
          await files.write(target, `${mode}/deep/dir/f.bin`, bytes, { signal: signal(), maxBytes: 2 << 20 }),
        );
        expect(w, mode).toEqual({ path: `/workspace/${mode}/deep/dir/f.bin`, size: bytes.byteLength });
        const r = value(await files.read(target, `/workspace/${mode}/deep/dir/f.bin`, { signal: signal() }));
        if (r.kind !== "file") throw new Error(`${mode}: expected a file`);
        expect(r.size, mode).toBe(bytes.byteLength);
        expect(sha(await bytesOf(r.body)), mode).toBe(sha(bytes));
        // No temporary file is left beside it.
        const names = (await run(`ls -A ${mode}/deep/dir`)).stdout;
        expect(names, mode).toBe("f.bin\n");
      }
    });

    it("lists directories the same way (flat and recursive, symlinks not followed)", async () => {
      await run("mkdir -p tree/a/b && echo x > tree/a/one && echo yy > tree/a/b/two && ln -s /etc tree/link");
      const views: unknown[] = [];
      for (const [mode, files] of both) {
        const flat = value(await files.read(target, "tree", { signal: signal() }));
        if (flat.kind !== "dir") throw new Error(`${mode}: expected a dir`);
        const rec = value(await files.list(target, "tree/", { signal: signal(), recursive: true }));
        const strip = (es: Array<{ name: string; type: string; size: number }>) =>
          es.map(({ name, type, size }) => ({ name, type, size }));
        views.push({ flat: strip(flat.entries), rec: strip(rec.entries), truncated: rec.truncated });
      }
      expect(views[0]).toEqual({
        flat: [
          { name: "a", type: "dir", size: 0 },
          { name: "link", type: "symlink", size: 0 },
        ],
        rec: [
          { name: "a", type: "dir", size: 0 },
          { name: "link", type: "symlink", size: 0 },
          { name: "a/b", type: "dir", size: 0 },
          { name: "a/one", type: "file", size: 2 },
          { name: "a/b/two", type: "file", size: 3 },
        ],
        truncated: false,
      });
      expect(views[1]).toEqual(views[0]);
    });

    it("pages a listing of 12,000 entries: capped by entries and by bytes, `next` continues with no repeat or gap", async () => {
      // 12,000 names of 200 characters under three directories (~3 MiB of JSON: the byte cap
      // ends each page), and 10,500 short names in one (the entry cap ends the first page).
      await run(
        'mkdir -p big/d0 big/d1 big/d2 short && for d in 0 1 2; do (cd big/d$d && seq -f "%0200g" $((d*4000)) $((d*4000+3999)) | xargs touch); done && (cd short && seq 1 10500 | xargs touch)',
      );
      const longNames = ["d0", "d1", "d2"];
      for (let i = 0; i < 12_000; i++)
        longNames.push(`d${Math.floor(i / 4000)}/${String(i).padStart(200, "0")}`);
      longNames.sort(listOrder);
      const shortNames = Array.from({ length: 10_500 }, (_, i) => String(i + 1)).sort(listOrder);

      for (const [mode, files] of both) {
        const pages = async (path: string, recursive: boolean) => {
          const out: Array<{ names: string[]; bytes: number; truncated: boolean; next?: string }> = [];
          let after: string | undefined;
          for (;;) {
            const page = value(
              await files.list(target, path, { signal: signal(), recursive, ...(after ? { after } : {}) }),
            );
            out.push({
              names: page.entries.map((e) => e.name),
              bytes: Buffer.byteLength(JSON.stringify(page)),
              truncated: page.truncated,
              ...(page.next !== undefined ? { next: page.next } : {}),
            });
            if (!page.truncated) return out;
            expect(page.next, mode).toBe(page.entries.at(-1)?.name);
            after = page.next;
          }
        };
        const long = await pages("big", true);
        // Each page's answer stays within the byte cap (plus the envelope); together they are the
        // whole listing in order, each name once.
        expect(long.length, mode).toBeGreaterThanOrEqual(3);
        for (const p of long) expect(p.bytes, mode).toBeLessThanOrEqual(SANDBOX_LIMITS.maxListBytes + 1024);
        expect(long.at(-1)?.truncated, mode).toBe(false);
        expect(
          long.flatMap((p) => p.names),
          mode,
        ).toEqual(longNames);

        const short = await pages("short", false);
        expect(
          short.map((p) => p.names.length),
          mode,
        ).toEqual([SANDBOX_LIMITS.maxListEntries, 500]);
        expect(
          short.flatMap((p) => p.names),
          mode,
        ).toEqual(shortNames);
        // A plain read of the directory is the first page too, not the whole directory.
        const read = value(await files.read(target, "short", { signal: signal() }));
        if (read.kind !== "dir") throw new Error(`${mode}: expected a dir`);
        expect([read.entries.length, read.truncated, read.next], mode).toEqual([
          SANDBOX_LIMITS.maxListEntries,
          true,
          short[0]?.next,
        ]);
      }
    }, 120_000);

    it("api mode walks no deeper than a page needs: a directory it cannot read, below a full first level, is never opened", async () => {
      await run(
        'mkdir -p walk/zz/locked/in && (cd walk && seq -f "f%05g" 1 10001 | xargs touch) && chmod 000 walk/zz/locked',
      );
      try {
        // The sandbox's user cannot read it: a walk of the whole tree fails there (find exits 1).
        expect((await run("ls walk/zz/locked")).exitCode).not.toBe(0);
        const api = both.find(([mode]) => mode === "api")?.[1] as SandboxFiles;
        const page = value(await api.list(target, "walk", { signal: signal(), recursive: true }));
        expect([page.entries.length, page.truncated, page.next]).toEqual([
          SANDBOX_LIMITS.maxListEntries,
          true,
          `f${String(SANDBOX_LIMITS.maxListEntries).padStart(5, "0")}`,
        ]);
      } finally {
        await run("chmod 755 walk/zz/locked && rm -rf walk");
      }
    }, 120_000);

    it("refuses path escapes with invalid_path in both modes, symlinks resolved inside the pod", async () => {
      await run("ln -sfn / root-link && ln -sfn /etc/passwd pw-link");
      const escapes = [
        "../etc/passwd",
        "a/../../etc",
        "/etc/passwd",
        "/workspacex/y",
        "root-link/etc",
        "pw-link",
      ];
      for (const [mode, files] of both) {
        for (const p of escapes) {
          expect(codeOf(await files.read(target, p, { signal: signal() })), `${mode} read ${p}`).toBe(
            "invalid_path",
          );
        }
        for (const p of ["../x", "/tmp/x", "root-link/tmp/x", "/workspace"]) {
          const w = await files.write(target, p, new Uint8Array([1]), { signal: signal(), maxBytes: 10 });
          expect(codeOf(w), `${mode} write ${p}`).toBe("invalid_path");
        }
        expect(codeOf(await files.remove(target, "root-link/tmp", { signal: signal() })), mode).toBe(
          "invalid_path",
        );
      }
      // Nothing was written outside.
      expect((await run("ls /tmp/x 2>&1; true")).stdout).toMatch(/No such file/);
    });

    it("answers file_not_found, payload_too_large and deletes the same way", async () => {
      for (const [mode, files] of both) {
        expect(codeOf(await files.read(target, "missing.txt", { signal: signal() })), mode).toBe(
          "file_not_found",
        );
        expect(codeOf(await files.remove(target, "missing.txt", { signal: signal() })), mode).toBe(
          "file_not_found",
        );
        const big = await files.write(target, "big.bin", new Uint8Array(11), {
          signal: signal(),
          maxBytes: 10,
        });
        expect(codeOf(big), mode).toBe("payload_too_large");
        value(
          await files.write(target, `${mode}-gone/x.txt`, new Uint8Array([1]), {
            signal: signal(),
            maxBytes: 10,
          }),
        );
        value(await files.remove(target, `${mode}-gone`, { signal: signal() }));
        expect(codeOf(await files.read(target, `${mode}-gone/x.txt`, { signal: signal() })), mode).toBe(
          "file_not_found",
        );
      }
      expect((await run("ls -A | grep -c tmp-; true")).stdout.trim()).toBe("0");
    });
  },
);

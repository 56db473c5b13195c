import { z } from "zod";

export const WORKSPACE = "/workspace";

/**
 * A path the model names: relative to /workspace or absolute under it. This refuses the obvious
 * escapes early with a sentence the model can act on; the pod checks again where the symlinks are.
 */
export const ToolPathSchema = z
  .string()
  .min(1, "path must not be empty")
  .max(1024, "path is longer than 1024 characters")
  .refine((p) => !p.includes("\0"), "path must not contain NUL")
  .refine((p) => !p.startsWith("/") || p === WORKSPACE || p.startsWith(`${WORKSPACE}/`), {
    message: "path must be relative to /workspace or absolute under /workspace",
  })
  .refine((p) => !p.split("/").includes(".."), "path must not contain '..'");

/** The path relative to /workspace ("" for the workspace itself), as the files routes take it. */
export function workspaceRelative(path: string): string {
  const rel =
    path === WORKSPACE ? "" : path.startsWith(`${WORKSPACE}/`) ? path.slice(WORKSPACE.length + 1) : path;
  return rel
    .split("/")
    .filter((s) => s !== "" && s !== ".")
    .join("/");
}

/** The absolute path inside the pod, for what the model is shown. */
export const workspaceAbsolute = (path: string): string => {
  const rel = workspaceRelative(path);
  return rel === "" ? WORKSPACE : `${WORKSPACE}/${rel}`;
};

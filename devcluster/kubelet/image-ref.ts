/**
 * The repository part of an image reference: drops `@digest` and a `:tag` in the last path
 * segment, but keeps a registry port (`host:5000/x:tag` → `host:5000/x`).
 */
export function imageRepository(ref: string): string {
  const noDigest = ref.split("@")[0] ?? ref;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

export type SystemDepPurpose = "stack" | "browser";
export interface SystemDep {
  bin: string;
  pkg: string;
  why: string;
  for: ReadonlyArray<SystemDepPurpose>;
}
export declare const SYSTEM_DEPS: ReadonlyArray<SystemDep>;
export declare function missingSystemDeps(purposes?: ReadonlyArray<SystemDepPurpose>): SystemDep[];
export declare function installCommand(pkgs: ReadonlyArray<string>): string;
export declare function ensureSystemDeps(opts?: {
  purposes?: ReadonlyArray<SystemDepPurpose>;
  entry?: string;
  quiet?: boolean;
}): boolean;

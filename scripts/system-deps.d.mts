export declare const SYSTEM_DEPS: ReadonlyArray<{ bin: string; pkg: string; why: string }>;
export declare function ensureSystemDeps(opts?: { quiet?: boolean }): boolean;

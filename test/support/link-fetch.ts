// The fixture lives in devstack/fixtures/ (bench uses it too and must not import test/).
export * from "../../devstack/fixtures/link-fetch.ts";

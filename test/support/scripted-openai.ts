// The fixture lives in devstack/fixtures/ (devstack and bench use it too and must not import test/).
export * from "../../devstack/fixtures/scripted-openai.ts";

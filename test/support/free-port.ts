// The helper lives in devstack/ (the stack names its egress proxy's port before starting it, and
// devstack must not import test/).
export { freePort } from "../../devstack/ports.ts";

// A vitest reporter that counts tests the way vitest's own summary does — an `it.fails` that failed
// as expected is an "expected fail", not a pass (vitest's JSON report counts it as passed) — and
// writes the counts as JSON to the file named by PI_TEST_COUNTS, for scripts/test.mjs's closing line.
import { writeFileSync } from "node:fs";

export default class CountReporter {
  counts = { passed: 0, failed: 0, expectedFail: 0, skipped: 0, todo: 0 };

  onTestCaseResult(test) {
    const state = test.result()?.state;
    if (state === "passed") {
      if (test.options.fails) this.counts.expectedFail++;
      else this.counts.passed++;
    } else if (state === "failed") this.counts.failed++;
    else if (test.options.mode === "todo") this.counts.todo++;
    else this.counts.skipped++;
  }

  onTestRunEnd(_modules, unhandledErrors) {
    const file = process.env.PI_TEST_COUNTS;
    if (!file) return;
    writeFileSync(file, JSON.stringify({ ...this.counts, unhandledErrors: unhandledErrors?.length ?? 0 }));
  }
}

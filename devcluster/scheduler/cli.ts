// `node --import tsx devcluster/scheduler/cli.ts [--kubeconfig PATH]`: the scheduler alone,
// against any API server (KUBECONFIG or ~/.kube/config by default). Ctrl-C stops it.
import { KubeConfig } from "@kubernetes/client-node";
import { startScheduler } from "./scheduler.ts";

const args = process.argv.slice(2);
const i = args.indexOf("--kubeconfig");
const kc = new KubeConfig();
if (i >= 0 && args[i + 1]) kc.loadFromFile(args[i + 1] as string);
else kc.loadFromDefault();
const scheduler = await startScheduler({
  kubeConfig: kc,
  log: (m) => process.stderr.write(`scheduler: ${m}\n`),
});
process.stderr.write(`scheduler: running against ${kc.getCurrentCluster()?.server ?? "?"}\n`);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    void scheduler.close().finally(() => process.exit(0));
  });
}

// Validates prometheus-operator resources (JSON array on stdin) against the CRD schemas that
// @kubernetes-models/prometheus-operator ships. Prints one line per resource; exits 1 on any failure.
// argv[2] is the package's directory, as `cargo xtask setup` installed it (ES module: imported by path).
import fs from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const v1 = await import(pathToFileURL(path.join(process.argv[2], "monitoring.coreos.com/v1/index.js")).href);

const docs = JSON.parse(fs.readFileSync(0, "utf8"));
let failed = 0;
for (const doc of docs) {
  const Kind = v1[doc.kind];
  const name = `${doc.kind}/${doc.metadata && doc.metadata.name}`;
  if (doc.apiVersion !== "monitoring.coreos.com/v1" || typeof Kind !== "function") {
    console.log(`FAIL ${name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Kind(doc).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    failed++;
    const details = (e.errors || []).map((x) => `${x.instancePath || "/"} ${x.message}${x.params && x.params.additionalProperty ? ` (${x.params.additionalProperty})` : ""}`);
    console.log(`FAIL ${name}: ${details.join("; ") || e.message}`);
  }
}
process.exit(failed ? 1 : 0);

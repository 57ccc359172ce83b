// Validates ServiceMonitor and PrometheusRule documents against the prometheus-operator CRD
// schemas shipped by @kubernetes-models/prometheus-operator (installed into .tools/ by
// scripts/install-tools.sh).
//
//   node tests/ops/validate_crds.mjs FILE.json...
//
// Each FILE holds one JSON document or an array of them (the tests convert rendered YAML to
// JSON: no YAML parser ships with these packages). Prints one line per document and exits 1
// when any document is invalid or of a kind this script does not know.
// NODE_MODULES overrides where the packages are looked up.

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = process.env.NODE_MODULES ?? resolve(here, "../../.tools/node_modules");
const models = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");

async function load(kind) {
  const module = await import(pathToFileURL(join(models, `${kind}.js`)).href);
  return module[kind];
}

const kinds = {
  ServiceMonitor: await load("ServiceMonitor"),
  PrometheusRule: await load("PrometheusRule"),
};

function check(doc, source) {
  const name = `${source}: ${doc.kind}/${doc.metadata?.name}`;
  const Model = kinds[doc.kind];
  if (doc.apiVersion !== "monitoring.coreos.com/v1" || Model === undefined) {
    console.log(`${name}: not a monitoring.coreos.com/v1 ServiceMonitor or PrometheusRule`);
    return false;
  }
  try {
    new Model(doc).validate();
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    return false;
  }
  console.log(`${name}: valid`);
  return true;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.log("usage: node validate_crds.mjs FILE.json...");
  process.exit(2);
}
let ok = true;
for (const file of files) {
  const parsed = JSON.parse(readFileSync(file, "utf8"));
  for (const doc of Array.isArray(parsed) ? parsed : [parsed]) {
    ok = check(doc, file) && ok;
  }
}
process.exit(ok ? 0 : 1);

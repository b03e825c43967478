#!/usr/bin/env node
// Writes manifests/monitoring/prometheusrule.yaml (a PrometheusRule for the
// prometheus-operator) from manifests/monitoring/meshprobe-rules.yaml (the plain
// Prometheus rules file, the one to edit). The deploy tests check the two stay equal.
//   node tests/deploy/sync-rules.js            rewrite prometheusrule.yaml
//   node tests/deploy/sync-rules.js --check    exit 1 when it is out of date
'use strict';
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

const dir = path.resolve(__dirname, '../../manifests/monitoring');
const rulesFile = path.join(dir, 'meshprobe-rules.yaml');
const outFile = path.join(dir, 'prometheusrule.yaml');

function render() {
  const rules = YAML.parse(fs.readFileSync(rulesFile, 'utf8'));
  const doc = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'meshprobe',
      namespace: 'meshprobe',
      labels: {'app.kubernetes.io/name': 'meshprobe', 'app.kubernetes.io/component': 'monitoring'},
    },
    spec: {groups: rules.groups},
  };
  return '# GENERATED from meshprobe-rules.yaml by tests/deploy/sync-rules.js: do not edit by hand.\n' +
      '# Edit meshprobe-rules.yaml, then run `node tests/deploy/sync-rules.js`.\n' +
      YAML.stringify(doc, {lineWidth: 0});
}

const text = render();
if (process.argv.includes('--check')) {
  const current = fs.existsSync(outFile) ? fs.readFileSync(outFile, 'utf8') : '';
  if (current !== text) {
    console.error(`${outFile} is out of date: run node tests/deploy/sync-rules.js`);
    process.exit(1);
  }
  console.log('prometheusrule.yaml is up to date');
} else {
  fs.writeFileSync(outFile, text);
  console.log(`wrote ${outFile}`);
}

